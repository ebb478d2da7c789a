#!/usr/bin/env python3
"""How well the decomposition's halo scale length h is recovered on a finished mock run (issue 19).

    python bench/halo_fit.py RUN_DIR [--variant default] [--method sersic --method image]

For every galaxy of the run's SYNTHETIC mock the transfer inputs are rebuilt
from the run's files (:func:`ismcgm.decompose.transfer_inputs`: continuum image
PSF-matched and reprojected onto the aligned reference grid, masks, the
reference cube), once per galaxy, ``h`` is fitted with each ``--method`` (``intrinsic.halo_fit``; default: all) and compared with
the scale length injected into the mock (``results/mock/truth.json``, the
``paper`` geometry's exponential halo; a ``compact`` mock has a Gaussian
halo and no injected h).  Printed: per galaxy the injected and fitted h, and
per method the median and spread of log10(h_fit / h_true) and the fraction
within 15 %.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ismcgm import decompose, samples
from ismcgm.io import read_cube, read_image, read_table
from ismcgm.maskio import aligned_wcs


def injected_h(truth: dict, gid: str) -> float:
    comps = truth["galaxies"][gid]["components"]
    hs = [c.get("halo_profile", {}).get("h_arcsec") for c in comps]
    return float(np.mean(hs)) if all(h is not None for h in hs) else float("nan")


def galaxy_inputs(run: Path, variant: str, row):
    """(masks, PSF-matched continuum, background, reference cube, aligned WCS) of one galaxy of the run."""
    gid = row["id"]
    cube = read_cube(run / row[f"cube_{samples.reference_grating(row)}"], gid)
    aligned = aligned_wcs(cube.wcs, read_table(run / f"results/alignment/{gid}.csv"))
    masks, sb, background = decompose.transfer_inputs(read_image(run / row["image"], gid), cube, aligned,
                                                      run / f"results/masks/{variant}/{gid}.fits", row)
    return masks, sb, background, cube, aligned


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--variant", default="default")
    ap.add_argument("--method", action="append", default=None, help=f"one of {decompose.HALO_FITS}")
    a = ap.parse_args(argv)
    methods = a.method or list(decompose.HALO_FITS)
    run = a.run_dir.resolve()
    truth = json.loads((run / "results/mock/truth.json").read_text())
    table = samples.read_sample_table(run / "results/mock/samples.tsv")
    rows = []
    print(f"{'id':8s} {'h_true':>7s} " + " ".join(f"{m:>12s}" for m in methods))
    for gid, row in table.iterrows():
        row = row.copy()
        row["id"] = gid
        inputs = galaxy_inputs(run, a.variant, row)
        h_true = injected_h(truth, gid)
        hs, post = [], []
        for m in methods:
            t, grid = decompose.transfer_from_masks(*inputs, row, halo_fit=m, posterior=True)
            hs.append(float(t["halo_h_arcsec"].iloc[0]))
            post.append(decompose.halo_percentiles(grid))
        rows.append((gid, h_true, hs, post))
        print(f"{gid:8s} {h_true:7.3f} " + " ".join(f"{h:6.3f} ({p[0]:.3f}-{p[2]:.3f})" for h, p in zip(hs, post)),
              flush=True)
    print()
    for j, m in enumerate(methods):
        d = np.array([np.log10(hs[j] / ht) for _, ht, hs, _ in rows if np.isfinite(ht)])
        if not d.size:
            print(f"{m}: no injected h (not a paper-geometry mock)")
            continue
        within = np.mean(np.abs(10**d - 1) <= 0.15)
        covered = np.mean([p[j][0] <= ht <= p[j][2] for _, ht, _, p in rows if np.isfinite(ht)])
        print(f"{m:12s} log10(h_fit/h_true): median {np.median(d):+.3f}, 16-84% {np.percentile(d, 16):+.3f} .. "
              f"{np.percentile(d, 84):+.3f}; within 15 %: {within:.0%} of {d.size}; injected h within the "
              f"posterior's 16-84 %: {covered:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
