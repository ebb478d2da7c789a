"""Config and sample-table checks run by the Snakefile before any job.

Errors are :class:`ConfigError` with a single line naming the key (or file)
and the fix.  Valid configs are then passed through
:func:`snakemake.utils.validate`, which fills the schema defaults.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from . import samples as sio


class ConfigError(ValueError):
    """A bad config value or sample table; the message is one line."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _one_line(err: jsonschema.ValidationError, what: str) -> str:
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(err.schema.get("properties", {}))
        return f"{what}: unknown key {extra[0]!r} under {key} -- fix: remove it or use one of: {allowed}"
    desc = err.schema.get("description", "")
    fix = f"({desc.strip()})" if desc else ""
    msg = err.message.replace("\n", " ")
    return f"{what}: bad value for {key}: {msg} -- fix: set {key} to a valid value {fix}".strip()


def check_config(config: dict, schema_path) -> dict:
    """Validate ``config`` against the schema, fill defaults, check cross-references.

    Raises
    ------
    ConfigError
        One line naming the offending key and the fix.
    """
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.validators.validator_for(schema)(schema).iter_errors(config), key=lambda e: len(e.absolute_path))
    if errors:
        raise ConfigError(_one_line(jsonschema.exceptions.best_match(errors), "config"))
    validate(config, str(schema_path), set_default=True)
    # defaults of each mask variant (schema defaults do not reach additionalProperties)
    variant_schema = schema["properties"]["masks"]["additionalProperties"]["properties"]
    for name, params in config["masks"].items():
        for k, sub in variant_schema.items():
            params.setdefault(k, sub["default"])
    missing = [v for v in config["variants"] if v not in config["masks"]]
    if missing:
        raise ConfigError(
            f"config: variants lists {missing[0]!r}, which is not an entry of masks -- "
            f"fix: add masks.{missing[0]} or use one of: {', '.join(config['masks'])}"
        )
    if config["samples"] != "mock" and not Path(config["samples"]).is_file():
        raise ConfigError(
            f"config: samples: file {config['samples']!r} not found -- fix: set samples to 'mock' "
            "or to the path of an existing tab-separated sample table"
        )
    return config


def check_samples(path, schema_path) -> pd.DataFrame:
    """Read and check a real sample table (columns, ids, types) with one-line errors."""
    try:
        df = sio.read_sample_table(path)
    except sio.InputError as exc:
        raise ConfigError(str(exc)) from None
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for rec in df.to_dict(orient="records"):
        rec = {k: v for k, v in rec.items() if k in schema["properties"]}
        err = jsonschema.exceptions.best_match(validator.iter_errors(rec))
        if err is not None:
            raise ConfigError(
                f"galaxy {rec.get('id')}: {path}: column {_key(err.absolute_path)}: "
                f"{err.message} -- fix: correct that cell (see README, sample table)"
            )
    for gid, row in df.iterrows():
        for col in FILE_COLUMNS:
            value = str(row.get(col, "") or "")
            if value and not Path(value).is_file():
                raise ConfigError(
                    f"galaxy {gid}: {path}: column {col}: file {value!r} not found -- fix: correct the path "
                    "(relative paths are relative to the directory snakemake runs in)"
                )
    return df


#: Sample-table columns that name input files.
FILE_COLUMNS = ("cube_g235m", "cube_g395m", "cube_g395h", "image", "alma_cube", "exclude_region")
