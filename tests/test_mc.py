"""Tests of the Monte Carlo seeding, draws and summaries of :mod:`ismcgm.mc`."""

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from ismcgm import mc

KEYS = dict(seed=7, component="G3", region="ism", grating="g395m")


# ---------------------------------------------------------------------------
# seeding
# ---------------------------------------------------------------------------


def test_rng_for_is_reproducible_and_key_sensitive():
    first = mc.rng_for(7, "G3", "ism", "g395m", 4).standard_normal(5)
    np.testing.assert_array_equal(first, mc.rng_for(7, "G3", "ism", "G395M", 4).standard_normal(5))
    others = [
        mc.rng_for(8, "G3", "ism", "g395m", 4),
        mc.rng_for(7, "G4", "ism", "g395m", 4),
        mc.rng_for(7, "G3", "cgm", "g395m", 4),
        mc.rng_for(7, "G3", "ism", "g235m", 4),
        mc.rng_for(7, "G3", "ism", "g395m", 5),
    ]
    for rng in others:
        assert not np.allclose(first, rng.standard_normal(5))


def test_rng_for_does_not_depend_on_the_python_hash_seed():
    code = "from ismcgm.mc import rng_for; print(repr(rng_for(7, 'G3', 'ism', 'g395m', 4).random()))"
    values = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        values.add(float(out.stdout))
    assert values == {mc.rng_for(7, "G3", "ism", "g395m", 4).random()}


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_rng_for_rejects_bad_seeds(bad):
    with pytest.raises(ValueError):
        mc.rng_for(bad, "G3", "ism", "g395m", 0)
    with pytest.raises(ValueError):
        mc.rng_for(1, "G3", "ism", "g395m", bad)


# ---------------------------------------------------------------------------
# spectrum-level draws
# ---------------------------------------------------------------------------


def test_spectrum_realisations_do_not_depend_on_chunking():
    flux = np.linspace(1.0, 2.0, 40)
    err = np.full(40, 0.1)
    whole = mc.spectrum_realisations(flux, err, realisations=range(10), **KEYS)
    parts = np.vstack(
        [
            mc.spectrum_realisations(flux, err, realisations=range(0, 5), **KEYS),
            mc.spectrum_realisations(flux, err, realisations=[5, 6, 7, 8, 9], **KEYS),
        ]
    )
    np.testing.assert_array_equal(whole, parts)
    single = mc.spectrum_realisations(flux, err, realisations=[7], **KEYS)
    np.testing.assert_array_equal(single[0], whole[7])
    assert whole.shape == (10, 40)
    assert not np.allclose(whole[0], whole[1])


def test_spectrum_realisations_statistics_and_nan():
    flux = np.linspace(-1.0, 1.0, 30)
    err = np.linspace(0.5, 2.0, 30)
    flux[3] = np.nan
    err[8] = np.nan
    draws = mc.spectrum_realisations(flux, err, realisations=range(2000), **KEYS)
    assert np.all(np.isnan(draws[:, 3])) and np.all(np.isnan(draws[:, 8]))
    good = np.isfinite(flux) & np.isfinite(err)
    pulls = (draws[:, good] - flux[good]) / err[good]
    # each channel is N(flux, err): pooled pulls are standard normal
    assert stats.kstest(pulls.ravel(), "norm").pvalue > 1e-3
    np.testing.assert_allclose(pulls.std(axis=0), 1.0, atol=0.1)


def test_spectrum_realisations_reject_bad_input():
    with pytest.raises(ValueError):
        mc.spectrum_realisations(np.ones(5), np.ones(4), realisations=[0], **KEYS)
    with pytest.raises(ValueError):
        mc.spectrum_realisations(np.ones(5), np.ones(5), realisations=[], **KEYS)


# ---------------------------------------------------------------------------
# cube-level draws
# ---------------------------------------------------------------------------


def small_cube(seed=3):
    rng = np.random.default_rng(seed)
    n_wave, ny, nx = 24, 9, 10
    sci = rng.normal(1.0, 0.2, (n_wave, ny, nx))
    sci[8:12] += 3.0  # a "line"
    err = rng.uniform(0.2, 0.6, (n_wave, ny, nx))
    mask = np.zeros((ny, nx), dtype=bool)
    mask[3:6, 2:7] = True
    mask[6, 4] = True
    return sci, err, mask


def sum_extractor(mask):
    def extract(cube):
        return np.nansum(cube[:, mask], axis=1)

    return extract


def test_cube_realisations_do_not_depend_on_chunking():
    sci, err, mask = small_cube()
    extract = sum_extractor(mask)
    whole = mc.cube_realisations(sci, err, mask, extract, realisations=range(6), **KEYS)
    parts = np.vstack(
        [
            mc.cube_realisations(sci, err, mask, extract, realisations=[0, 1, 2], **KEYS),
            mc.cube_realisations(sci, err, mask, extract, realisations=[3, 4, 5], **KEYS),
        ]
    )
    np.testing.assert_array_equal(whole, parts)


def test_cube_and_spectrum_draws_agree_statistically():
    sci, err, mask = small_cube()
    extract = sum_extractor(mask)
    flux = extract(sci)
    sigma = np.sqrt(np.sum(err[:, mask] ** 2, axis=1))
    n = 600
    cube = mc.cube_realisations(sci, err, mask, extract, realisations=range(n), **KEYS)
    spec = mc.spectrum_realisations(flux, sigma, realisations=range(n), **KEYS)
    # a line flux: the sum over the line channels
    line_cube, line_spec = cube[:, 8:12].sum(axis=1), spec[:, 8:12].sum(axis=1)
    assert stats.ks_2samp(line_cube, line_spec).pvalue > 1e-3
    sigma_line = np.sqrt(np.sum(sigma[8:12] ** 2))
    for sample in (line_cube, line_spec):
        assert abs(sample.mean() - flux[8:12].sum()) < 4 * sigma_line / np.sqrt(n)
        assert sample.std(ddof=1) == pytest.approx(sigma_line, rel=0.12)
    # every channel: pooled pulls of both are standard normal and alike
    pulls_cube = ((cube - flux) / sigma).ravel()
    pulls_spec = ((spec - flux) / sigma).ravel()
    assert stats.ks_2samp(pulls_cube, pulls_spec).pvalue > 1e-3
    assert stats.kstest(pulls_cube, "norm").pvalue > 1e-3


def test_cube_realisations_touch_only_the_mask_box_and_keep_nan():
    sci, err, mask = small_cube()
    sci[10, 4, 4] = np.nan  # inside the mask
    seen = []

    def extract(cube):
        seen.append(cube.copy())
        return np.nansum(cube[:, mask], axis=1)

    out = mc.cube_realisations(sci, err, mask, extract, realisations=[0, 1], **KEYS)
    assert out.shape == (2, sci.shape[0])
    outside = np.ones(mask.shape, dtype=bool)
    outside[3:7, 2:7] = False  # the bounding box of the mask
    for cube in seen:
        assert np.isnan(cube[10, 4, 4])
        np.testing.assert_array_equal(cube[:, outside], sci[:, outside])
        assert not np.allclose(cube[:, mask], sci[:, mask])
    assert not np.allclose(seen[0], seen[1], equal_nan=True)


def test_cube_realisations_reject_bad_input():
    sci, err, mask = small_cube()
    extract = sum_extractor(mask)
    with pytest.raises(ValueError):
        mc.cube_realisations(sci, err[:-1], mask, extract, realisations=[0], **KEYS)
    with pytest.raises(ValueError):
        mc.cube_realisations(sci, err, mask[:-1], extract, realisations=[0], **KEYS)
    with pytest.raises(ValueError):
        mc.cube_realisations(sci, err, np.zeros_like(mask), extract, realisations=[0], **KEYS)


# ---------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------


def test_summarise_detection():
    fluxes = np.random.default_rng(1).normal(10.0, 1.0, 100)
    s = mc.summarise(fluxes)
    assert s.flux == pytest.approx(np.median(fluxes))
    assert s.err == pytest.approx(np.std(fluxes, ddof=1))
    assert s.snr == pytest.approx(s.flux / s.err)
    assert s.detected is True
    assert np.isnan(s.upper_limit)
    assert s.n_valid == 100


def test_summarise_upper_limit_from_three_channel_sums():
    rng = np.random.default_rng(2)
    fluxes = rng.normal(1.0, 1.0, 100)
    three = rng.normal(0.0, 2.5, 100)
    s = mc.summarise(fluxes, snr_threshold=3, limit_realisations=three)
    assert s.detected is False
    assert s.upper_limit == pytest.approx(3.0 * np.std(three, ddof=1))
    fallback = mc.summarise(fluxes)
    assert fallback.upper_limit == pytest.approx(3.0 * np.std(fluxes, ddof=1))
    # the threshold is configurable
    assert mc.summarise(fluxes, snr_threshold=0.5).detected is True


def test_summarise_ignores_failed_realisations_and_vectorises():
    rng = np.random.default_rng(3)
    fluxes = np.column_stack([rng.normal(10.0, 1.0, 50), rng.normal(0.0, 1.0, 50), np.full(50, np.nan)])
    fluxes[[4, 9], 0] = np.nan
    s = mc.summarise(fluxes)
    assert s.flux.shape == (3,)
    assert s.flux[0] == pytest.approx(np.nanmedian(fluxes[:, 0]))
    assert s.err[0] == pytest.approx(np.nanstd(fluxes[:, 0], ddof=1))
    np.testing.assert_array_equal(s.n_valid, [48, 50, 0])
    np.testing.assert_array_equal(s.detected, [True, False, False])
    assert np.isnan(s.flux[2]) and np.isnan(s.upper_limit[2])
    assert np.isfinite(s.upper_limit[1]) and np.isnan(s.upper_limit[0])
