"""The sample table (SPEC section 0): reading, checking, and per-galaxy choices.

Light on imports (pandas only, lazily) because the Snakefile uses it at
parse time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import instruments
from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: Columns every sample table must have (SPEC section 0).
REQUIRED_SAMPLE_COLUMNS = (
    "id",
    "z",
    "logmstar",
    "ra",
    "dec",
    "image",
    "image_filter",
    "image_psf_fwhm",
    "ifu_psf_fwhm",
    "merger",
)

#: Optional columns and their defaults: one ``cube_<setup>`` per setup of the registry
#: (:data:`ismcgm.instruments.CUBE_COLUMNS`), at least one of them given per galaxy.
OPTIONAL_SAMPLE_COLUMNS = {
    **dict.fromkeys(instruments.CUBE_COLUMNS, ""),
    "alma_cube": "",
    "components": "",
    "exclude_region": "",
}

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def parse_components(text: str) -> list[tuple[float, float]]:
    """Parse ``"ra_a,dec_a;ra_b,dec_b"`` (degrees) into a list of (ra, dec)."""
    out = []
    for part in str(text).split(";"):
        part = part.strip()
        if not part:
            continue
        ra, dec = (float(v) for v in part.split(","))
        out.append((ra, dec))
    return out


#: Every column a sample table may have.
KNOWN_SAMPLE_COLUMNS = (*REQUIRED_SAMPLE_COLUMNS, *OPTIONAL_SAMPLE_COLUMNS)

_COMPONENTS_FIX = "set components to 'ra_a,dec_a;ra_b,dec_b' in degrees"


def _cell_error(gid, path, col, value, problem, fix):
    """The one-line error of one cell: ``galaxy <id>: <table>: column <col>: <value> ...``."""
    return InputError(gid, path, f"column {col}: {value!r} {problem}", fix)


def _check_columns(columns, path) -> None:
    """Reject duplicate (pandas renames them ``z.1``) and unknown columns, listing the known ones."""
    known = ", ".join(KNOWN_SAMPLE_COLUMNS)
    columns = [str(c) for c in columns]
    for c in columns:
        base, _, n = c.rpartition(".")
        if (base in columns and n.isdigit()) or columns.count(c) > 1:
            name = base if n.isdigit() and base in columns else c
            raise InputError(None, path, f"column {name!r} appears more than once",
                             f"keep one {name!r} column (known columns: {known})")
    unknown = [c for c in columns if c not in KNOWN_SAMPLE_COLUMNS]
    if unknown:
        raise InputError(None, path, f"unknown column(s) {', '.join(map(repr, unknown))}",
                         f"rename or remove them; known columns: {known}")


def check_sample_table(df: pd.DataFrame, path="sample table") -> pd.DataFrame:
    """Check a sample table and fill optional columns; raise :class:`InputError`.

    Relative file paths are kept as written (relative to the working
    directory, like every path Snakemake sees).
    """
    if len(df.columns) == 1 and "," in str(df.columns[0]):
        raise InputError(None, path, "the header is one comma-separated column, not tab-separated columns",
                         "separate the columns with tabs (a TSV file), not commas")
    missing = [c for c in REQUIRED_SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            None, path, f"missing column(s) {', '.join(missing)}",
            "add them (see README, 'Sample table for real data')",
        )
    _check_columns(df.columns, path)
    if len(df) == 0:
        raise InputError(None, path, "the table has a header but no galaxy rows",
                         "add one row per galaxy (see README, 'Sample table for real data')")
    df = df.copy()
    for col, default in OPTIONAL_SAMPLE_COLUMNS.items():
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna(default).astype(str)
    df["id"] = df["id"].astype(str)
    for gid in df["id"]:
        if not _ID_PATTERN.match(gid) or ".." in gid:
            raise InputError(
                gid, path, f"sample id {gid!r} contains characters not allowed in file names",
                "use letters, digits, '_', '-', '.', '+' only (no spaces, '/' or '..')",
            )
    dup = df["id"][df["id"].duplicated()].tolist()
    if dup:
        raise InputError(dup[0], path, f"duplicate sample id {dup[0]!r}", "make every id unique")
    merger = []
    for gid, v in zip(df["id"], df["merger"]):
        try:
            merger.append(_as_bool(v))
        except ValueError:
            raise _cell_error(gid, path, "merger", v, "is not True or False", "write True or False") from None
    df["merger"] = merger
    ids = set(df["id"])
    for _, row in df.iterrows():
        gid = row["id"]
        _check_setups(gid, path, row)
        try:
            comps = parse_components(row["components"])
        except ValueError:
            raise _cell_error(gid, path, "components", row["components"], "is not 'ra_a,dec_a;ra_b,dec_b'",
                              _COMPONENTS_FIX) from None
        if row["merger"] and len(comps) != 2:
            raise InputError(gid, path, "merger without two component positions", _COMPONENTS_FIX)
        if not row["merger"] and row["components"].strip():
            raise _cell_error(gid, path, "components", row["components"], "is given but merger is False",
                              "empty the components cell, or set merger to True")
        if row["merger"]:
            clash = [f"{gid}_{s}" for s in "ab" if f"{gid}_{s}" in ids]
            if clash:
                raise InputError(gid, path, f"merger component {clash[0]!r} has the name of another galaxy",
                                 f"rename galaxy {clash[0]!r} (merger components are named <id>_a and <id>_b)")
    return df.set_index("id", drop=False)


def _check_setups(gid, path, row) -> None:
    """At least one cube, and at most one setup per band (G395H replaces G395M)."""
    present = galaxy_gratings(row)
    if not present:
        raise InputError(gid, path, "no cube given (every cube_<setup> cell is empty)",
                         f"give at least one cube path in one of: {', '.join(instruments.CUBE_COLUMNS)}")
    seen = {}
    for name in present:
        band = instruments.get_setup(name).band
        if band in seen:
            a, b = seen[band], name
            raise InputError(gid, path, f"both {instruments.cube_column(a)} and {instruments.cube_column(b)} are "
                             f"given ({b.upper()} replaces {a.upper()}: one band, {band})",
                             "leave one of the two cells empty")
        seen[band] = name


def _as_bool(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "y", "t"):
        return True
    if s in ("false", "0", "no", "n", "f", "", "nan"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _check_row_lengths(path) -> None:
    """A row with more (non-empty) cells than the header would be shifted silently by pandas: reject it."""
    lines = [ln.rstrip("\r\n") for ln in Path(path).read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return
    n = len(lines[0].split("\t"))
    for i, ln in enumerate(lines[1:], start=2):
        cells = ln.split("\t")
        if len(cells) > n and any(c.strip() for c in cells[n:]):
            gid = cells[0].strip() or None
            raise InputError(gid, path, f"data row {i - 1} has {len(cells)} tab-separated cells, the header {n}",
                             "give every row exactly one cell per header column (empty cells stay as tabs)")


def read_sample_table(path, cubes=None) -> pd.DataFrame:
    """Read a tab-separated sample table (SPEC section 0) and check it.

    ``cubes``: optional long cube table (``id, setup, path``, :func:`read_cube_table`)
    whose cubes fill the wide ``cube_<setup>`` columns before the checks.
    """
    import pandas as pd

    if not Path(path).is_file():
        raise InputError(None, path, "sample table not found", "set `samples:` to an existing TSV file or to 'mock'")
    _check_row_lengths(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype={"id": str}, keep_default_na=False, comment="#")
    except pd.errors.EmptyDataError:
        raise InputError(None, path, "the sample table is empty (no header, no rows)",
                         "write the tab-separated header and one row per galaxy (see README)") from None
    except pd.errors.ParserError as exc:
        raise InputError(None, path, f"not a tab-separated table ({str(exc).strip().splitlines()[-1]})",
                         "give every row as many tab-separated cells as the header") from None
    if cubes and "id" in df.columns:
        df = merge_cube_table(df.assign(id=df["id"].astype(str)), read_cube_table(cubes, df), cubes)
    return check_sample_table(df, path)


#: Columns of the long cube table (one row per cube, like the catalog workflows' ``units.tsv``).
CUBE_TABLE_COLUMNS = ("id", "setup", "path")


def read_cube_table(path, samples_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read a long cube table (``id, setup, path``, tab-separated) and check it.

    Every ``setup`` must be a setup of :data:`ismcgm.instruments.SETUPS`,
    every ``id`` a galaxy of ``samples_df`` (when given), each (id, setup)
    appear once.  Raises :class:`InputError` (one line).
    """
    import pandas as pd

    if not Path(path).is_file():
        raise InputError(None, path, "cube table not found", "set `cubes:` to an existing TSV file (id, setup, path) "
                         "or remove the key")
    _check_row_lengths(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except pd.errors.EmptyDataError:
        raise InputError(None, path, "the cube table is empty", "write the header 'id<TAB>setup<TAB>path' and one "
                         "row per cube") from None
    if len(df.columns) == 1 and "," in str(df.columns[0]):
        raise InputError(None, path, "the header is one comma-separated column, not tab-separated columns",
                         "separate the columns with tabs (a TSV file), not commas")
    cols = [str(c) for c in df.columns]
    if sorted(cols) != sorted(CUBE_TABLE_COLUMNS):
        raise InputError(None, path, f"columns {cols}, expected exactly {list(CUBE_TABLE_COLUMNS)}",
                         "give the three tab-separated columns id, setup, path")
    if len(df) == 0:
        raise InputError(None, path, "the cube table has a header but no rows", "add one row per cube")
    ids = set(samples_df["id"].astype(str)) if samples_df is not None else None
    for i, (gid, setup, cube) in enumerate(zip(df["id"], df["setup"], df["path"]), start=1):
        where = f"row {i}: "
        if setup.strip().lower() not in instruments.SETUPS:
            raise InputError(gid or None, path, f"{where}setup {setup!r} is not a known setup",
                             f"use one of: {', '.join(instruments.SETUPS)} (ismcgm.instruments)")
        if not cube.strip():
            raise InputError(gid or None, path, f"{where}empty path for setup {setup}", "give the cube's file path")
        if ids is not None and gid not in ids:
            raise InputError(gid or None, path, f"{where}galaxy {gid!r} is not in the sample table",
                             "add the galaxy to the sample table or correct the id")
    df["setup"] = df["setup"].str.strip().str.lower()
    dup = df[df.duplicated(["id", "setup"])]
    if len(dup):
        gid, setup = dup.iloc[0]["id"], dup.iloc[0]["setup"]
        raise InputError(gid, path, f"two rows for setup {setup}", "keep one cube per galaxy and setup")
    return df


def merge_cube_table(samples_df: pd.DataFrame, cubes: pd.DataFrame, path="cube table") -> pd.DataFrame:
    """Put the long table's cubes into the wide ``cube_<setup>`` columns (a galaxy may not use both forms)."""
    out = samples_df.copy()
    for col in instruments.CUBE_COLUMNS:
        out[col] = out[col].fillna("").astype(str) if col in out.columns else ""
    ids = out["id"].astype(str)
    for gid in dict.fromkeys(cubes["id"]):
        wide = [c for c in instruments.CUBE_COLUMNS if (out.loc[ids == gid, c] != "").any()]
        if wide:
            raise InputError(gid, path, f"the galaxy also has a {wide[0]} cell in the sample table",
                             "give each galaxy's cubes either in the sample table's cube_<setup> columns or in "
                             "the cube table, not both")
    for gid, setup, cube in zip(cubes["id"], cubes["setup"], cubes["path"]):
        out.loc[ids == gid, instruments.cube_column(setup)] = cube
    return out


def galaxy_gratings(row) -> list[str]:
    """Setups present for one sample row (non-empty ``cube_<setup>``), in the registry's wavelength order."""
    return [name for name in instruments.SETUPS if str(row.get(instruments.cube_column(name), "") or "")]


def reference_grating(row) -> str:
    """The setup whose grid carries the masks: the present one of best preference rank (G395H/G395M)."""
    return instruments.by_rank(galaxy_gratings(row))[0]
