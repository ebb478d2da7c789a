"""The [C II] spill correction's Monte Carlo: spill matrices of redrawn Hα maps (issue 18's [C II] profile)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from ismcgm import instrument as ins
from ismcgm import linemap
from ismcgm.cii import spill
from ismcgm.io import Cube
from ismcgm.mock.maps import _celestial_header as celestial_header
from ismcgm.seeding import rng

N, PIX, Z, BEAM, PSF = 40, 0.1, 5.0, (0.35, 0.3, 20.0), 0.2


def _wcs():
    return WCS(celestial_header(150.1, 2.2, N, PIX))


def _annuli():
    yy, xx = np.mgrid[:N, :N]
    r = np.hypot(xx - 19.3, yy - 20.1)
    return r, {"ANN00": r < 3, "ANN01": (r >= 3) & (r < 6), "ANN02": (r >= 6) & (r < 10)}


def _cube(noise: float):
    """A cube with an exponential Halpha disc on a flat continuum, ERR = ``noise`` (MJy/sr), noise drawn."""
    r, _ = _annuli()
    wave = np.linspace(3.7, 4.2, 400)
    lam0 = ins.observed_wavelength_um("HA", Z)
    prof = np.exp(-0.5 * ((wave - lam0) / 0.0015) ** 2)
    sci = 0.1 + 5.0 * prof[:, None, None] * np.exp(-r / 3.0)[None]
    err = np.full_like(sci, noise)
    sci = sci + noise * np.random.default_rng(2).standard_normal(sci.shape)
    pixar = float(((PIX * u.arcsec) ** 2).to_value(u.sr))
    return Cube("mem", sci, err, None, wave, _wcs(), pixar, fits.Header())


def test_matrices_of_many_maps_equal_the_one_map_matrix():
    """The adjoint form (one convolution per mask) gives the same T as smoothing each region's map."""
    r, masks = _annuli()
    maps = np.stack([np.exp(-r / 3.0), np.exp(-r / 5.0) + 0.01 * np.random.default_rng(1).standard_normal(r.shape)])
    many = spill.transfer_matrices(maps, masks, _wcs(), BEAM, PSF)
    for k in range(2):
        _, one = spill.transfer_matrix(maps[k], masks, _wcs(), BEAM, PSF)
        np.testing.assert_allclose(many[k], one, rtol=1e-12, atol=1e-15)
    neg = maps[:1].copy()
    neg[0][masks["ANN02"]] = -1.0  # a region with no positive Halpha: a NaN column, as transfer_matrix
    t = spill.transfer_matrices(neg, masks, _wcs(), BEAM, PSF)[0]
    assert np.isnan(t[:, 2]).all() and np.isfinite(t[:, :2]).all()


def test_line_map_realisations_scatter_as_the_cube_noise_says():
    cube = _cube(noise=0.05)
    ha = linemap.line_map(cube, Z, "HA")
    quiet = Cube(cube.path, cube.sci, 0.0 * cube.err, None, cube.wave_um, cube.wcs, cube.pixar_sr, cube.header)
    same = linemap.line_map_realisations(quiet, Z, "HA", lambda i: rng(1, "t", i), range(2))
    np.testing.assert_array_equal(same[0], ha)  # no noise: the map itself
    maps = linemap.line_map_realisations(cube, Z, "HA", lambda i: rng(1, "t", i), range(300))
    again = linemap.line_map_realisations(cube, Z, "HA", lambda i: rng(1, "t", i), [7])
    np.testing.assert_array_equal(again[0], maps[7])  # keyed per realisation
    _, window_noise = linemap.line_snr_maps(cube, Z, "HA")
    ratio = np.median(maps.std(axis=0) / window_noise)
    assert 1.0 < ratio < 1.3  # the window's noise plus the continuum median's


def test_realisations_with_the_nominal_matrix_reproduce_the_fixed_correction():
    r, masks = _annuli()
    _, t = spill.transfer_matrix(np.exp(-r / 3.0), masks, _wcs(), BEAM, PSF)
    names = list(masks)
    table = pd.DataFrame({"component": "g", "region": ["ann00", "ann01", "ann02"]})
    fluxes = np.random.default_rng(3).uniform(1, 2, (3, 50))
    spectra = {("g", reg): (type("S", (), {"nu_line_hz": 1.9e12})(), None, type("M", (), {"fluxes": f})())
               for reg, f in zip(table["region"], fluxes)}
    fixed = spill.realisation_table(table, spectra, names, t, "g")
    per = spill.realisation_table(table, spectra, names, t, "g", t_realisations=np.repeat(t[None], 50, axis=0))
    np.testing.assert_allclose(per["flux_native"], fixed["flux_native"], rtol=1e-12)
    bad = np.repeat(t[None], 50, axis=0)
    bad[4] = np.nan  # a realisation whose Halpha map has no morphology in a region: NaN, not the nominal
    per = spill.realisation_table(table, spectra, names, t, "g", t_realisations=bad)
    assert per.loc[per["realisation"] == 4, "flux_native"].isna().all()
    assert per.loc[per["realisation"] != 4, "flux_native"].notna().all()
    rows = table.assign(flux=fluxes.mean(axis=1), flux_err=0.1, upper_limit=np.nan)
    corr = spill.spill_corrected(rows, names, t, "g", realisations=per)
    width = per.groupby("region")["flux_native"].apply(lambda v: 0.5 * np.diff(np.nanpercentile(v, [16, 84]))[0])
    np.testing.assert_allclose(corr["flux_native_err"], width.loc[table["region"]].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_spill_matrices_follow_the_cube_realisations(seed):
    """End to end on a cube: the matrices scatter about the nominal one, more for a noisier cube."""
    _, masks = _annuli()
    headers = {"PRIMARY": fits.Header()}
    spread = []
    for noise in (0.01, 0.1):
        cube = _cube(noise)
        names, t = spill.transfer_matrix_from_cube(cube, (masks, _wcs(), headers), Z, PSF, BEAM, "g")
        names_mc, t_nom, t_mc = spill.transfer_matrix_realisations(cube, (masks, _wcs(), headers), Z, PSF, BEAM, seed,
                                                                   "g", range(40))
        assert names_mc == names and t_mc.shape == (40, 3, 3)
        np.testing.assert_array_equal(t_nom, t)  # the nominal matrix is transfer_matrix_from_cube's
        np.testing.assert_allclose(np.nanmedian(t_mc, axis=0), t, atol=0.02)
        spread.append(np.nanstd(t_mc[:, 2, 1]))
    assert spread[1] > 3 * spread[0]


_THREADS_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
import test_spill_realisations as t
from ismcgm.cii import spill
r, masks = t._annuli()
maps = np.exp(-r / 3.0)[None] + 0.01 * np.random.default_rng(1).standard_normal((60,) + r.shape)
m = spill.transfer_matrices(maps, masks, t._wcs(), t.BEAM, t.PSF)
sys.stdout.write(m.tobytes().hex())
"""


def test_spill_matrices_do_not_depend_on_the_blas_thread_count():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = _THREADS_SCRIPT.format(tests=str(Path(__file__).parent))
    outs = []
    for threads in ("1", "4"):
        env = {**os.environ, **{k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    assert outs[0] and outs[0] == outs[1]
