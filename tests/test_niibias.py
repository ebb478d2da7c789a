"""Tests of ismcgm.niibias (SPEC section 12): seeding, S/N calibration, the table and its figure."""

import numpy as np
import pandas as pd
import pytest

from ismcgm import fit, niibias
from ismcgm.niibias import COLUMNS, DEFAULT_NII_BIAS_CONFIG


def test_defaults_match_spec():
    assert DEFAULT_NII_BIAS_CONFIG["snr"] == [3, 5, 10, 20]
    assert DEFAULT_NII_BIAS_CONFIG["n_trials"] == 200
    assert DEFAULT_NII_BIAS_CONFIG["grating"] == "g395m"


# ---------------------------------------------------------------------------
# seeding
# ---------------------------------------------------------------------------


def test_draws_are_deterministic_per_seed_and_snr():
    wave, a, _, truth = niibias.simulate(5, 20, seed=11)
    np.testing.assert_array_equal(a, niibias.simulate(5, 20, seed=11)[1])
    assert not np.array_equal(a, niibias.simulate(5, 20, seed=12)[1])
    # another S/N has its own stream, not a rescaled copy of this one
    c = niibias.simulate(10, 20, seed=11)[1]
    model = niibias.true_spectrum(wave, 5.0, "g395m", truth, 0.0, 100.0)
    r = np.corrcoef((a - model).ravel(), (c - model).ravel())[0, 1]
    assert abs(r) < 0.1


def test_seed_sequence_keys():
    s1 = niibias.seed_sequence(1, 3).generate_state(4)
    np.testing.assert_array_equal(s1, niibias.seed_sequence(1, 3.0).generate_state(4))  # 3 == 3.0
    assert not np.array_equal(s1, niibias.seed_sequence(1, 5).generate_state(4))
    assert not np.array_equal(s1, niibias.seed_sequence(2, 3).generate_state(4))
    with pytest.raises(ValueError):
        niibias.seed_sequence(-1, 3)


def test_rows_do_not_depend_on_the_snr_list():
    cfg = {"n_trials": 30}
    both = niibias.nii_bias_table({**cfg, "snr": [3, 10]}, seed=5)
    alone = niibias.nii_bias_table({**cfg, "snr": [10]}, seed=5)
    pd.testing.assert_series_equal(both.iloc[1], alone.iloc[0], check_names=False)
    again = niibias.nii_bias_table({**cfg, "snr": [3, 10]}, seed=5)
    pd.testing.assert_frame_equal(both, again)


# ---------------------------------------------------------------------------
# S/N calibration
# ---------------------------------------------------------------------------


def test_simulation_covers_exactly_the_fitted_channels():
    wave, flux, err, truth = niibias.simulate(10, 3, seed=1)
    res = fit.fit_spectra(wave, flux, err, 5.0, "g395m", lines=list(niibias.LINES))
    n_par = 2 + 2 + 2  # v, sigma, [N II] and Ha amplitudes, linear continuum
    assert np.all(res.dof == wave.size - n_par)
    assert np.all(err == err[0]) and err[0] > 0
    assert truth["NII6548"] == pytest.approx(truth["NII6583"] / 3)
    assert truth["HA"] == pytest.approx(10 * truth["NII6583"])


def test_known_shape_error_matches_linear_least_squares():
    """s sqrt((A^T A)^-1)_00 is the scatter of the known-shape linear fit."""
    snr = 4.0
    wave, flux, err, truth = niibias.simulate(snr, 2000, seed=3)
    a = niibias.design_matrix(wave, 5.0, "g395m", 0.0, 100.0, 1)
    coef = np.linalg.lstsq(a, flux.T, rcond=None)[0]
    rel = coef[0] / truth["NII6583"]
    assert np.std(rel, ddof=1) == pytest.approx(1 / snr, rel=0.06)
    assert np.mean(rel) == pytest.approx(1.0, abs=4 / snr / np.sqrt(2000))
    unit = niibias.known_shape_flux_error(wave, 5.0, "g395m", channel_sigma=1.0)
    assert niibias.known_shape_flux_error(wave, 5.0, "g395m", channel_sigma=2.0) == pytest.approx(2 * unit)
    assert err[0] * unit == pytest.approx(truth["NII6583"] / snr)


@pytest.mark.parametrize("snr", [5, 20])
def test_empirical_scatter_of_the_full_fit_is_calibrated(snr):
    """Fitted fluxes (free kinematics, fast fitter) scatter by ~F/(S/N): within 20%."""
    ratios = niibias.fitted_over_true(snr, 400, seed=20251125)
    assert np.all(np.isfinite(ratios))
    assert np.std(ratios, ddof=1) * snr == pytest.approx(1.0, rel=0.2)


# ---------------------------------------------------------------------------
# table, errors, figure
# ---------------------------------------------------------------------------


def test_table_columns_and_values():
    table = niibias.nii_bias_table({"snr": [3, 20], "n_trials": 40}, seed=1)
    assert tuple(table.columns) == COLUMNS == ("snr", "n_trials", "median_fitted_over_true", "p16", "p84")
    assert table["snr"].tolist() == [3.0, 20.0]
    assert table["n_trials"].tolist() == [40, 40]
    assert np.all(table["p16"] <= table["median_fitted_over_true"])
    assert np.all(table["median_fitted_over_true"] <= table["p84"])
    # a higher S/N gives a narrower distribution
    width = table["p84"] - table["p16"]
    assert width.iloc[1] < width.iloc[0]


def test_summarise_ignores_failed_fits():
    row = niibias.summarise(3, [0.5, 1.0, np.nan, 1.5])
    assert row["n_trials"] == 4
    assert row["median_fitted_over_true"] == pytest.approx(1.0)


@pytest.mark.parametrize("cfg", [{"z": 9.0}, {"grating": "g235m"}])
def test_blend_outside_the_grating_raises(cfg):
    with pytest.raises(ValueError, match="nii_bias"):
        niibias.simulate(5, 2, seed=1, cfg=cfg)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        niibias.channel_noise(0, niibias.simulation_wavelengths(5.0), 5.0, "g395m")
    with pytest.raises(ValueError):
        niibias.nii_bias_table({"snr": []})


def test_figure(tmp_path):
    from ismcgm.plots.nii_bias import plot_nii_bias

    table = pd.DataFrame({"snr": [3.0, 5.0, 10.0, 20.0], "n_trials": 200,
                          "median_fitted_over_true": [0.98, 1.0, 1.0, 1.0], "p16": [0.65, 0.8, 0.9, 0.95],
                          "p84": [1.3, 1.2, 1.1, 1.05]})
    plot_nii_bias(table, tmp_path / "f.pdf", tmp_path / "f.png")
    assert (tmp_path / "f.pdf").stat().st_size > 0 and (tmp_path / "f.png").stat().st_size > 0
