"""The sample table (SPEC section 0): reading, checking, and per-galaxy choices.

Light on imports (pandas only, lazily) because the Snakefile uses it at
parse time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

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
    "cube_g235m",
    "image",
    "image_filter",
    "image_psf_fwhm",
    "ifu_psf_fwhm",
    "merger",
)

#: Optional columns and their defaults.
OPTIONAL_SAMPLE_COLUMNS = {
    "cube_g395m": "",
    "cube_g395h": "",
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


def check_sample_table(df: pd.DataFrame, path="sample table") -> pd.DataFrame:
    """Check a sample table and fill optional columns; raise :class:`InputError`.

    Relative file paths are kept as written (relative to the working
    directory, like every path Snakemake sees).
    """
    missing = [c for c in REQUIRED_SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            None, path, f"missing column(s) {', '.join(missing)}",
            "add them (see README, 'Sample table for real data')",
        )
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
    df["merger"] = df["merger"].map(_as_bool)
    for _, row in df.iterrows():
        if not (row["cube_g395m"] or row["cube_g395h"]):
            raise InputError(
                row["id"], path, "no cube_g395m or cube_g395h given",
                "give the G395M (or G395H) cube path",
            )
        if row["merger"] and len(parse_components(row["components"])) != 2:
            raise InputError(
                row["id"], path, "merger without two component positions",
                "set components to 'ra_a,dec_a;ra_b,dec_b' in degrees",
            )
    return df.set_index("id", drop=False)


def _as_bool(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "y", "t"):
        return True
    if s in ("false", "0", "no", "n", "f", "", "nan"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def read_sample_table(path) -> pd.DataFrame:
    """Read a tab-separated sample table (SPEC section 0) and check it."""
    import pandas as pd

    if not Path(path).is_file():
        raise InputError(None, path, "sample table not found", "set `samples:` to an existing TSV file or to 'mock'")
    df = pd.read_csv(path, sep="\t", dtype={"id": str}, keep_default_na=False, comment="#")
    return check_sample_table(df, path)


def galaxy_gratings(row) -> list[str]:
    """Gratings present for one sample row, G235M first, then G395M or G395H."""
    out = ["g235m"]
    out.append("g395h" if row["cube_g395h"] else "g395m")
    return out


def reference_grating(row) -> str:
    """The grating whose grid carries the masks (G395H where present, else G395M)."""
    return "g395h" if row["cube_g395h"] else "g395m"

