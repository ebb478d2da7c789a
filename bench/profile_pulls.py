#!/usr/bin/env python3
"""Radial-profile pulls pooled over several mock seeds (issue 18's calibration check with more power).

    python bench/profile_pulls.py RUN_DIR [RUN_DIR ...]

Each ``RUN_DIR`` is a finished run of the SYNTHETIC mock (e.g. the default config with ``mock: {seed: N}``)
with ``results/validation/<variant>/profile_pulls.csv``.  One 18-galaxy mock gives ~60-70 pulls per ratio,
so its pooled median scatters by ~0.15-0.2 and its std by ~0.1-0.3 (outliers) from seed to seed: issue 18's
thresholds (|median| <= 0.2, std 0.8-1.25) sit at about that scatter.  Printed per ratio, per run and pooled:
n, median, std and the robust std (1.4826 MAD); and, pooled, the same split by the annulus's E(B-V)
(``ebv_gas``, ``ebv_method`` of ``radial_line_fluxes.csv``): annuli whose median Balmer decrement is below the
intrinsic one (E(B-V) = 0 at the value, the realisations keeping their dust noise) and annuli whose dust is
unknown (Ha or Hb undetected: the dust-sensitive ratios are limits there, README "Error model").
Then, pooled, the split of the dust-corrected O32 and N2O2 pulls into the uncorrected ratio and the Balmer
decrement (``profile_dust_split.csv``, :func:`ismcgm.resolved.dust_pull_summary`): their pull stds and the
correlation of their deviations, which narrows (c < 0, positive correlation) or widens the corrected pulls.
``--variant`` picks the mask variant (default ``default``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ismcgm.resolved import dust_pull_summary

RATIOS = ("O3", "O2", "O32", "R23", "N2", "N2O2", "BALMER", "CII_HA")


def summary(x: pd.Series) -> str:
    x = x.dropna().to_numpy(float)
    if x.size < 2:
        return f"n {x.size:4d}"
    med = np.median(x)
    robust = 1.4826 * np.median(np.abs(x - med))
    return f"n {x.size:4d}  median {med:+.2f}  std {x.std(ddof=1):.2f}  robust std {robust:.2f}"


def load(run: Path, variant: str) -> pd.DataFrame:
    res = run / "results"
    pulls = pd.read_csv(res / f"validation/{variant}/profile_pulls.csv", comment="#")
    fluxes = pd.read_csv(res / f"tables/{variant}/radial_line_fluxes.csv", comment="#")
    ebv = fluxes[fluxes["line"] == "HA"].drop_duplicates(["component", "region"])[["component", "region", "ebv_gas",
                                                                                   "ebv_method"]]
    return pulls.merge(ebv, on=["component", "region"], how="left").assign(run=str(run))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--variant", default="default")
    a = ap.parse_args()
    pulls = pd.concat([load(r, a.variant) for r in a.runs], ignore_index=True)
    for ratio in RATIOS:
        p = pulls[pulls["ratio"] == ratio]
        if p.empty:
            continue
        print(f"{ratio}")
        for run, g in p.groupby("run", sort=False):
            print(f"  {run:40s} {summary(g['pull'])}")
        print(f"  {'pooled':40s} {summary(p['pull'])}")
        floor = (p["ebv_method"] == "balmer") & (p["ebv_gas"].abs() < 1e-9)
        print(f"  {'  E(B-V) > 0':40s} {summary(p.loc[(p['ebv_method'] == 'balmer') & ~floor, 'pull'])}")
        print(f"  {'  E(B-V) = 0 (decrement below 2.86)':40s} {summary(p.loc[floor, 'pull'])}")
        print(f"  {'  dust unknown (Ha or Hb undetected)':40s} {summary(p.loc[p['ebv_method'] == 'none', 'pull'])}")
    splits = [r / "results" / f"validation/{a.variant}/profile_dust_split.csv" for r in a.runs]
    if all(f.exists() for f in splits):
        terms = pd.concat([pd.read_csv(f, comment="#").assign(run=str(f)) for f in splits], ignore_index=True)
        terms["component"] = terms["run"] + ":" + terms["component"]  # components of different runs differ
        print("dust split of the pulls (per run, then pooled):")
        for f, g in terms.groupby("run", sort=False):
            print(dust_pull_summary(g).to_string(index=False, float_format="%.2f"))
        print(dust_pull_summary(terms).to_string(index=False, float_format="%.2f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
