"""The posterior of the halo's scale length and its draws in the decomposition's Monte Carlo (issue 19)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.test_decompose import FLUX, H_TRUE, N, PSF, _ism_map, _masks, _offset, _realisations, _sky, _wcs

from ismcgm import decompose


def _noisy_fit(halo_snr: float, seed: int, lines=("HA",)):
    """Transfer and posterior tables of a one-component sky whose halo has total S/N ``halo_snr`` per line."""
    w = _wcs()
    positions = [("", _offset(0.05, -0.03))]
    ism = _ism_map(w, [positions[0][1]])
    masks = _masks(ism)
    rng = np.random.default_rng(seed)
    maps, noises = [], []
    for line in lines:
        sky = _sky(w, [ism], positions, [FLUX[line]])
        sigma = FLUX[line][1] / halo_snr / np.sqrt(N * N)  # the halo's total flux over its noise summed over the field
        maps.append(sky + sigma * rng.standard_normal((N, N)))
        noises.append(np.full((N, N), sigma))
    return decompose.galaxy_transfer("g1", masks, ism, 0.0, [None], positions, maps, np.ones((N, N), bool), PSF,
                                     w, 6.5, noise=noises, halo_fit="sersic", posterior=True), masks


def test_posterior_table_is_the_transfer_table_per_h_with_weights():
    (nominal, grid), _ = _noisy_fit(30.0, 1)
    assert list(grid.columns) == list(decompose.POSTERIOR_COLUMNS)
    per_h = grid.drop_duplicates("h_index")
    assert per_h["h_weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(per_h["halo_h_arcsec"].to_numpy()) > 0)  # h_index in increasing h
    assert (grid.groupby("h_index").size() == len(nominal)).all()
    # the best-fit h is one of the grid's, with the nominal matrix there
    best = grid[np.isclose(grid["halo_h_arcsec"], nominal["halo_h_arcsec"].iloc[0], rtol=0, atol=0)]
    np.testing.assert_array_equal(best["t"].to_numpy(), nominal["t"].to_numpy())


def test_posterior_widens_as_the_halo_fades():
    """A bright halo pins h down, a faint one does not: the 16-84 % range of h (median over four noise draws)
    is several times wider at a halo S/N of 5 than at 50.  (Not ~10x: at high S/N the Sersic stand-in's
    mismatch with this lopsided ISM sets the reduced chi^2 and, through it, the width.)"""
    width = {snr: np.median([np.log10(p84 / p16) for p16, _, p84 in
                             (decompose.halo_percentiles(_noisy_fit(snr, 200 + s)[0][1]) for s in range(4))])
             for snr in (50.0, 5.0)}
    assert width[5.0] > 2.5 * width[50.0] > 0


def test_posterior_is_calibrated_over_noise_draws():
    """Over independent noise draws of a moderately faint halo, the injected h falls within the posterior's
    16-84 % range in about 68 % of them (a miscalibrated chi^2 scale gives ~0 % or ~100 %)."""
    inside = []
    for seed in range(12):
        (_, grid), _ = _noisy_fit(15.0, 100 + seed)
        p16, _, p84 = decompose.halo_percentiles(grid)
        inside.append(p16 <= H_TRUE <= p84)
    assert 0.4 <= np.mean(inside) <= 0.95, np.mean(inside)


def test_halo_draws_follow_the_weights_and_are_keyed_by_realisation():
    w = np.array([0.1, 0.6, 0.3])
    idx = decompose.halo_draws(w, 7, "g1", range(6000))
    np.testing.assert_allclose(np.bincount(idx, minlength=3) / idx.size, w, atol=0.02)
    # any order or subset of the realisations draws the same h for each
    again = decompose.halo_draws(w, 7, "g1", [5999, 3, 10])
    np.testing.assert_array_equal(again, idx[[5999, 3, 10]])
    assert not np.array_equal(decompose.halo_draws(w, 8, "g1", range(200)), idx[:200])
    assert not np.array_equal(decompose.halo_draws(w, 7, "g2", range(200)), idx[:200])


def _two_h_posterior(nominal, masks, w, skies_at):
    """A posterior table with the matrices at h = 0.8 and 1.25 H_TRUE (weights 0.5 each)."""
    rows = []
    for k, factor in enumerate((0.8, 1.25)):
        h = factor * H_TRUE
        halo = decompose.halo_term((N, N), w, skies_at, h, PSF)
        t = nominal.copy()
        for ext in masks:
            sel = (t["mask"] == ext) & (t["term"] == "CGM")
            t.loc[sel, "t"] = float(halo[masks[ext]].sum())
        rows.append(t.assign(halo_h_arcsec=h, h_index=k, h_weight=0.5))
    return pd.concat(rows, ignore_index=True).loc[:, list(decompose.POSTERIOR_COLUMNS)]


def test_decompose_realisations_uses_each_realisations_draw_of_h():
    """Each realisation is decomposed with the matrix at its own h: the same h for every line and value
    column of that realisation, the nominal matrix's results where the posterior has one h, and results
    that do not depend on the order of the rows."""
    w = _wcs()
    positions = [("", _offset(0.05, -0.03))]
    ism = _ism_map(w, [positions[0][1]])
    masks = _masks(ism)
    skies = {line: _sky(w, [ism], positions, [f]) for line, f in FLUX.items()}
    nominal = decompose.galaxy_transfer("g1", masks, ism, 0.0, [None], positions, skies["HA"], np.ones((N, N), bool),
                                        PSF, w, 6.5, halo_fit="image")
    one = _realisations("g1", masks, skies, lambda ext: ("g1", ext))
    real = pd.concat([one.assign(realisation=i) for i in range(40)], ignore_index=True)
    fixed = decompose.decompose_realisations(real, {"g1": nominal})
    single = _two_h_posterior(nominal, masks, w, positions[0][1]).query("h_index == 0").assign(h_weight=1.0)
    single["t"] = nominal["t"].to_numpy()  # one h: the nominal matrix
    same = decompose.decompose_realisations(real, {"g1": nominal}, posteriors={"g1": single}, seed=3)
    pd.testing.assert_frame_equal(same, fixed)

    post = _two_h_posterior(nominal, masks, w, positions[0][1])
    out = decompose.decompose_realisations(real, {"g1": nominal}, posteriors={"g1": post}, seed=3)
    which = decompose.halo_draws([0.5, 0.5], 3, "g1", range(40))
    assert 0 < which.sum() < 40  # both h drawn
    halo = out[out["region"] == "CGM"].pivot_table(index="realisation", columns="line", values="flux")
    # every realisation has the same region fluxes: those that drew the same h give the same term fluxes,
    # the two h give different ones
    for j in (0, 1):
        block = halo[which == j]
        assert np.ptp(block.to_numpy(), axis=0).max() == 0.0
    assert not np.allclose(halo[which == 0].iloc[0], halo[which == 1].iloc[0])
    np.testing.assert_allclose(out[out["line"] == "HA"].set_index(["realisation", "region"])["flux3"],
                               2 * out[out["line"] == "HA"].set_index(["realisation", "region"])["flux"])
    shuffled = decompose.decompose_realisations(real.sample(frac=1.0, random_state=1), {"g1": nominal},
                                                posteriors={"g1": post}, seed=3)
    key = ["region", "line", "realisation"]
    pd.testing.assert_frame_equal(shuffled.sort_values(key).reset_index(drop=True),
                                  out.sort_values(key).reset_index(drop=True))
    with pytest.raises(ValueError, match="seed"):
        decompose.decompose_realisations(real, {"g1": nominal}, posteriors={"g1": post})


class _QuadraticCost:
    """A stand-in for the halo fit's memoised cost: chi^2 = dof + ((ln h - ln h0) / s)^2 (x (1 + eps))."""

    def __init__(self, h0=0.4, s=0.08, eps=0.0, dof=200):
        self.h0, self.s, self.eps, self.dof, self.evals = h0, s, eps, dof, {}

    def __call__(self, log_h):
        h = float(np.exp(log_h))
        if h not in self.evals:
            self.evals[h] = (self.dof + ((log_h - np.log(self.h0)) / self.s) ** 2 * (1.0 + self.eps), None)
        return self.evals[h][0]


@pytest.mark.parametrize("width", [0.0207, 0.07, 1.3])  # no walk step exactly at Delta = 25
def test_posterior_does_not_depend_on_the_points_the_fit_tried(width):
    """The posterior's h and weights are a function of the best fit and the cost alone: other evaluations in
    the memo (another optimiser path, e.g. after a rounding-level change upstream) leave them unchanged, and a
    1e-15 relative change of the cost moves the weights at rounding level only (they used to move by ~0.04:
    the fit's trial points were the posterior's nodes)."""
    bounds, best = (0.02, 5.0), 0.4
    hs, w = decompose.halo_posterior(_QuadraticCost(s=width), bounds, best)
    other = _QuadraticCost(s=width)
    for log_h in np.random.default_rng(3).uniform(np.log(0.05), np.log(3.0), 9):
        other(log_h)
    hs2, w2 = decompose.halo_posterior(other, bounds, best)
    np.testing.assert_array_equal(hs2, hs)
    np.testing.assert_array_equal(w2, w)
    for eps in (1e-15, -1e-15, 4e-16, -3e-16):  # the walk gives gaps of equal width: ties must not follow rounding
        hs3, w3 = decompose.halo_posterior(_QuadraticCost(s=width, eps=eps), bounds, best)
        np.testing.assert_array_equal(hs3, hs)
        np.testing.assert_allclose(w3, w, rtol=1e-12, atol=0)
    for shift in np.geomspace(1e-14, 1e-8, 13) * np.resize([1, -1], 13):  # the best fit moved at rounding level (its
        # ln h rounds differently, and the walk's gaps of equal width with it): the same grid, moved with it
        hs4, _ = decompose.halo_posterior(_QuadraticCost(s=width), bounds, best * (1 + shift))
        np.testing.assert_allclose(hs4, hs, rtol=2e-8, atol=0)
    # the grid resolves the posterior: at least H_POSTERIOR_CELLS cells inside Delta < 25 unless it is
    # narrower than the first step, and the weights' 16-84 % range in ln h is about +-width
    assert hs.size >= 5 and w.sum() == pytest.approx(1.0)
    if width >= 0.07:
        cdf = np.cumsum(w)
        lh = np.log(hs)
        p16, p84 = lh[np.searchsorted(cdf, 0.16)], lh[np.searchsorted(cdf, 0.84)]
        assert 0.6 * width < 0.5 * (p84 - p16) < 1.6 * width
