#!/usr/bin/env python3
"""Compare the results of two workflow runs, file by file (refactoring check).

    python bench/compare_outputs.py BEFORE_DIR AFTER_DIR [--list]

BEFORE_DIR and AFTER_DIR are the ``--directory`` of two snakemake runs (each
holds ``results/``).  Compared:

- every file under ``results/tables/`` and ``results/validation/`` (CSV, JSON,
  parquet, ...): byte for byte;
- every file under ``results/mc/`` (the per-chunk Monte Carlo parquet files),
  ``results/alignment/``, ``results/resolved/`` (annuli, Voronoi maps, [C II] of the annuli),
  ``results/intrinsic/`` (transfer matrices), ``results/cii/`` (per-galaxy [C II] tables and
  realisations) and ``results/cloudy/`` (decks, grid): byte for byte;
- every FITS file under ``results/masks/``, ``results/spectra/`` and
  ``results/mock/`` (the SYNTHETIC inputs: cubes, images, ALMA cubes, truth,
  simulation maps): byte for byte; where the bytes differ, each HDU's header
  (less the volatile keys in ``VOLATILE_KEYS``) and data are compared, so the
  report says what differs.
  None of the workflow's FITS writers stamps a date or checksum today, so a
  byte difference is a real difference and always fails.

A file present on one side only is a difference.  Two runs of the same code
(``tests/config/test.yaml``, 2 cores) give identical files for all of these,
so no file needs excluding.  Exit 0 when everything is
identical, 1 otherwise (2 for a usage error).  Figures (PDF/PNG: matplotlib
embeds a creation date), logs and the snakemake report are not compared.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
from pathlib import Path

COMPARED = ("tables", "validation", "mc", "masks", "spectra", "alignment", "cii", "resolved", "intrinsic", "cloudy", "mock")
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit")
# Header keys that could legitimately change from run to run; none is written
# by the workflow today (checked: two runs of the same code are identical).
VOLATILE_KEYS = {"DATE", "CHECKSUM", "DATASUM"}


def _files(root: Path) -> set[str]:
    out = set()
    for sub in COMPARED:
        base = root / "results" / sub
        if base.is_dir():
            out.update(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())
    return out


def _fits_detail(a: Path, b: Path) -> str:
    """Why two FITS files differ (header keys / data), for the report."""
    import numpy as np
    from astropy.io import fits

    notes = []
    with fits.open(a) as ha, fits.open(b) as hb:
        if len(ha) != len(hb):
            return f"HDU count {len(ha)} != {len(hb)}"
        for i, (x, y) in enumerate(zip(ha, hb)):
            kx = {k: v for k, v in x.header.items() if k not in VOLATILE_KEYS}
            ky = {k: v for k, v in y.header.items() if k not in VOLATILE_KEYS}
            if kx != ky:
                keys = sorted(k for k in set(kx) | set(ky) if kx.get(k) != ky.get(k))
                notes.append(f"HDU {i} header keys differ: {keys[:8]}")
            dx, dy = x.data, y.data
            if (dx is None) != (dy is None):
                notes.append(f"HDU {i} data present on one side only")
            elif dx is not None:
                if isinstance(dx, np.ndarray) and dx.dtype.names is None:
                    same = dx.shape == dy.shape and np.array_equal(dx, dy, equal_nan=True)
                else:
                    same = dx.tobytes() == dy.tobytes()
                if not same:
                    notes.append(f"HDU {i} data differ")
        only_volatile = not notes
    return "only volatile header keys differ" if only_volatile else "; ".join(notes)


def compare(before: Path, after: Path, verbose: bool = False) -> int:
    fa, fb = _files(before), _files(after)
    if not fa:
        print(f"compare: no results under {before}/results/{{{','.join(COMPARED)}}}", file=sys.stderr)
        return 2
    only_a, only_b = sorted(fa - fb), sorted(fb - fa)
    common = sorted(fa & fb)
    differ = []
    for rel in common:
        a, b = before / rel, after / rel
        if filecmp.cmp(a, b, shallow=False):
            if verbose:
                print(f"same     {rel}")
            continue
        detail = _fits_detail(a, b) if rel.endswith(FITS_SUFFIXES) else "bytes differ"
        differ.append((rel, detail))
    for rel in only_a:
        print(f"MISSING  {rel}  (only in {before})")
    for rel in only_b:
        print(f"EXTRA    {rel}  (only in {after})")
    for rel, detail in differ:
        print(f"DIFFER   {rel}  ({detail})")
    per_dir = {}
    for rel in common:
        per_dir.setdefault(rel.split("/")[1], 0)
        per_dir[rel.split("/")[1]] += 1
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(per_dir.items()))
    n_bad = len(only_a) + len(only_b) + len(differ)
    print(f"compared {len(common)} files ({counts}); "
          f"{len(differ)} differ, {len(only_a)} missing, {len(only_b)} extra")
    print("IDENTICAL" if n_bad == 0 else "DIFFERENT")
    return 0 if n_bad == 0 else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--list", action="store_true", help="also list the identical files")
    a = p.parse_args(argv)
    return compare(a.before, a.after, verbose=a.list)


if __name__ == "__main__":
    sys.exit(main())
