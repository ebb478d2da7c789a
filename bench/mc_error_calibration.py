#!/usr/bin/env python3
"""Are the Monte Carlo flux errors calibrated?  Independent noise draws of noiseless region spectra.

    python bench/mc_error_calibration.py RUN_DIR SETUP [--draws 100] [--realisations 100] ID:REGION ...

``RUN_DIR`` is a finished run of a mock with almost no IFU noise (e.g. ``mock: {noise_scale: 0.001}`` on top
of the config), so that its region spectra ``results/spectra/default/<id>_<REGION>_<setup>.fits`` are the
noiseless ones with ERR scaled by ``noise_scale``.  For each spectrum the ERR is scaled back (``--noise-scale``),
``--draws`` independent noisy spectra are drawn and each is fitted with the pipeline's Monte Carlo
(:func:`ismcgm.linefluxes.fit_chunk`, ``--realisations``); printed per line: the scatter of the draws'
fluxes (the realisations' medians) divided by the median quoted error (1 = calibrated) and the mean offset
from the noiseless fit in units of the error.  Mergers: ``<id>_a:ISM``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ismcgm import extract, linefluxes
from ismcgm.fit import fit_spectra
from ismcgm.samples import read_sample_table

FIT = {"method": "fast", "continuum_order": 1, "n_components": 1}


def calibrate(run: Path, setup: str, spec: str, draws: int, n_real: int, noise_scale: float) -> pd.DataFrame:
    gid, region = spec.split(":")
    z = float(read_sample_table(run / "results/mock/samples.tsv").loc[gid.split("_")[0], "z"])
    sp = extract.read_spectrum(run / f"results/spectra/default/{gid}_{region}_{setup}.fits")
    err = sp.err / noise_scale
    nominal = fit_spectra(sp.wave_um, sp.flux, err, z, setup, method=FIT["method"],
                          cont_order=FIT["continuum_order"], n_components=FIT["n_components"])
    rng = np.random.default_rng(20261201)
    medians, errors = [], []
    for k in range(draws):
        flux = sp.flux + err * rng.standard_normal(err.size)
        t = linefluxes.fit_chunk(gid, [(gid, region, sp.wave_um, flux, err)], z, setup, list(range(n_real)),
                                 1000 + k, FIT)
        g = t.groupby("line")["flux"]
        medians.append(g.median())
        errors.append(g.std())
    medians, errors = pd.DataFrame(medians), pd.DataFrame(errors)
    nom = pd.Series({line: float(np.ravel(nominal.flux[line])[0]) for line in nominal.lines})
    return pd.DataFrame({"spectrum": spec, "scatter_over_error": medians.std() / errors.median(),
                         "offset_over_error": (medians.mean() - nom) / errors.median()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("setup")
    ap.add_argument("spectra", nargs="+")
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--realisations", type=int, default=100)
    ap.add_argument("--noise-scale", type=float, default=0.001)
    a = ap.parse_args()
    out = pd.concat([calibrate(a.run, a.setup, s, a.draws, a.realisations, a.noise_scale) for s in a.spectra])
    print(out.round(3).to_string())
    print(f"scatter / error over all lines: mean {out['scatter_over_error'].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
