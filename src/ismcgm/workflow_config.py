"""Config and sample-table checks run by the Snakefile before any job.

Errors are :class:`ConfigError` with a single line naming the key (or file)
and the fix.  Valid configs then get the schema defaults filled in (the recipe
:func:`snakemake.utils.validate` uses, on the schema parsed once).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from . import inputcheck, instruments
from .instrument import check_line_list
from . import samples as sio


class ConfigError(ValueError):
    """A bad config value or sample table; the message is one line."""


#: PyYAML's libyaml loader where PyYAML was built with it (~8x faster on the config schema), else the Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path):
    """``yaml.safe_load`` of a file, with the C loader when available (same result, faster parse)."""
    return yaml.load(Path(path).read_text(), Loader=_YAML_LOADER)


def _with_defaults(validator_class):
    """``validator_class`` that also fills each missing property with its schema ``default``.

    The recipe of the jsonschema FAQ, as ``snakemake.utils.validate(..., set_default=True)`` uses it; done
    here on the schema already loaded, so the schema is parsed once per workflow parse, not twice.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for prop, sub in properties.items():
            if "default" in sub:
                instance.setdefault(prop, sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def read_yaml_config(path) -> dict:
    """Load one YAML config file; a syntax error names the file and the line."""
    try:
        data = load_yaml(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config {path}: not valid YAML at{where}: {problem} -- fix: correct the YAML syntax "
                          "there (indent with spaces, 'key: value')") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot be read ({exc.strerror}) -- fix: give an existing config file") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level is not a mapping of keys -- fix: write 'key: value' lines")
    return data or {}


def source_of(key, files) -> str:
    """``config <file>``: the last of ``files`` (YAML) that sets the dotted ``key`` (else all of them)."""
    files = [str(f) for f in files or ()]
    parts = [p for p in str(key).split(".") if p]
    for f in reversed(files):
        try:
            node = load_yaml(f)
        except (OSError, yaml.YAMLError):
            continue
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            if parts:
                return f"config {f}"
    return f"config {', '.join(files)}" if files else "config"


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _one_line(err: jsonschema.ValidationError, files) -> str:
    key = _key(err.absolute_path)
    what = source_of(key, files)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(err.schema.get("properties", {}))
        return f"{what}: unknown key {extra[0]!r} under {key} -- fix: remove it or use one of: {allowed}"
    desc = err.schema.get("description", "")
    fix = f"({desc.strip()})" if desc else ""
    msg = err.message.replace("\n", " ")
    return f"{what}: bad value for {key}: {msg} -- fix: set {key} to a valid value {fix}".strip()


def check_config(config: dict, schema_path, files=()) -> dict:
    """Validate ``config`` against the schema, fill defaults, check cross-references.

    ``files`` are the config files the values came from (the workflow's
    ``config.yaml`` and each ``--configfile``): every error names the one
    that sets the offending key.

    Raises
    ------
    ConfigError
        One line naming the offending key and the fix.
    """

    schema = load_yaml(schema_path)
    validator = jsonschema.validators.validator_for(schema)
    errors = sorted(validator(schema).iter_errors(config), key=lambda e: len(e.absolute_path))
    if errors:
        raise ConfigError(_one_line(jsonschema.exceptions.best_match(errors), files))
    _with_defaults(validator)(schema).validate(config)
    # defaults of each mask variant (schema defaults do not reach additionalProperties)
    variant_schema = schema["properties"]["masks"]["additionalProperties"]["properties"]
    for name, params in config["masks"].items():
        for k, sub in variant_schema.items():
            params.setdefault(k, sub["default"])
    missing = [v for v in config["variants"] if v not in config["masks"]]
    if missing:
        raise ConfigError(
            f"{source_of('variants', files)}: variants lists {missing[0]!r}, which is not an entry of masks -- "
            f"fix: add masks.{missing[0]} or use one of: {', '.join(config['masks'])}"
        )
    if config["samples"] != "mock" and not Path(config["samples"]).is_file():
        raise ConfigError(
            f"{source_of('samples', files)}: samples: file {config['samples']!r} not found -- fix: set samples to 'mock' "
            "or to the path of an existing tab-separated sample table"
        )
    if config.get("cubes"):
        if config["samples"] == "mock":
            raise ConfigError(f"{source_of('cubes', files)}: cubes is set but samples is 'mock' -- fix: remove cubes "
                              "(the mock writes its own table) or set samples to your sample table")
        if not Path(config["cubes"]).is_file():
            raise ConfigError(f"{source_of('cubes', files)}: cubes: file {config['cubes']!r} not found -- fix: set "
                              "cubes to an existing tab-separated table (id, setup, path) or remove the key")
    for i, sim in enumerate(config["cii"]["sims"]):
        if not Path(sim).is_file():
            raise ConfigError(
                f"{source_of('cii.sims', files)}: cii.sims[{i}]: file {sim!r} not found -- fix: correct the path "
                "(relative to the directory snakemake runs in) or remove it from cii.sims"
            )
    mock = config["mock"]
    if mock.get("geometry") == "paper" and mock.get("instrument", "nirspec") != "nirspec":
        raise ConfigError(
            f"{source_of('mock.geometry', files)}: mock.geometry: paper is the z = 4-6 NIRSpec survey's geometry, "
            f"not defined for mock.instrument: {mock['instrument']} -- fix: set mock.geometry: compact"
        )
    check_mass_bins(config, files)
    problem = check_line_list(config["lines"])
    if problem:
        raise ConfigError(f"{source_of('lines', files)}: bad value for lines: {problem} -- fix: correct the line list "
                          "(see the schema's lines description) or remove it for the default list")
    grating = str(config["nii_bias"]["grating"]).lower()
    if grating not in instruments.SETUPS:
        raise ConfigError(
            f"{source_of('nii_bias.grating', files)}: bad value for nii_bias.grating: {grating!r} is not a setup -- "
            f"fix: set nii_bias.grating to one of: {', '.join(instruments.SETUPS)}"
        )
    return config


def check_mass_bins(config: dict, files=()) -> None:
    """``stats.mass_bins`` must be strictly increasing (the schema cannot say so)."""
    bins = list(config["stats"]["mass_bins"])
    if any(b <= a for a, b in zip(bins, bins[1:])):
        raise ConfigError(
            f"{source_of('stats.mass_bins', files)}: stats.mass_bins {bins} are not strictly increasing -- fix: "
            f"list the bin edges in increasing order, e.g. {sorted(set(bins))}"
        )


def check_samples(path, schema_path, warn=None, cubes=None) -> pd.DataFrame:
    """Read and check a real sample table (columns, ids, types, files) with one-line errors.

    ``cubes``: the optional long cube table (config ``cubes``: ``id, setup, path``).

    The files are checked from their FITS headers (:mod:`ismcgm.inputcheck`);
    each warning line is passed to ``warn`` (default: printed to stderr).
    """
    import sys

    try:
        df = sio.read_sample_table(path, cubes)
    except sio.InputError as exc:
        raise ConfigError(str(exc)) from None
    schema = samples_schema(schema_path)
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
    for gid, row in df.iterrows():
        try:
            lines = inputcheck.check_row(gid, row, path)
        except sio.InputError as exc:
            raise ConfigError(str(exc)) from None
        for line in lines:
            (warn or (lambda m: print(f"WARNING: {m}", file=sys.stderr)))(line)
    return df


#: Sample-table columns that name input files (one cube column per setup of the registry).
FILE_COLUMNS = (*instruments.CUBE_COLUMNS, "image", "alma_cube", "exclude_region")


def samples_schema(schema_path) -> dict:
    """The samples schema with one ``cube_<setup>`` property per setup of :data:`ismcgm.instruments.SETUPS`."""
    schema = load_yaml(schema_path)
    for name, setup in instruments.SETUPS.items():
        schema["properties"][instruments.cube_column(name)] = {
            "type": "string", "description": f"{setup.instrument} {setup.label} cube (optional; at least one cube)"}
    return schema


def main(argv=None) -> int:
    """``python -m ismcgm.workflow_config FILE...``: check that config files are valid YAML."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    for f in argv:
        try:
            read_yaml_config(f)
        except ConfigError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
