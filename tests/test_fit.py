"""Tests of the emission-line model and the two fitters of :mod:`ismcgm.fit`."""

import numpy as np
import pytest

from ismcgm import fit, instrument

#: Line ratios of the synthetic spectra, relative to the brightest line.
RELATIVE = {
    "OII3728": 0.35,
    "HB": 0.3,
    "OIII4959": 0.8 / 3.0,
    "OIII5007": 0.8,
    "NII6548": 0.1 / 3.0,
    "HA": 1.0,
    "NII6583": 0.1,
    "SII6716": 0.08,
    "SII6731": 0.06,
}


def flux_error(grating, wave_um, err, sigma_kms):
    """Approximate 1-sigma error of an isolated line's flux (optimal weighting)."""
    sig_A = wave_um * 1e4 * np.hypot(sigma_kms, grating.lsf_sigma_kms(wave_um)) / instrument.C_KMS
    return err * np.sqrt(2.0 * np.sqrt(np.pi) * sig_A * grating.dlam_um * 1e4)


def synthetic(grating_name, z, snr, n_real, seed, velocity=40.0, sigma=80.0, err_level=1e-20):
    """Lines + sloped continuum + Gaussian noise; brightest line at S/N ``snr``."""
    rng = np.random.default_rng(seed)
    g = instrument.get_grating(grating_name)
    wave = g.wavelength_grid()
    lines = instrument.lines_in_grating(g, z)
    err = np.full(wave.size, err_level)
    top = max(lines, key=RELATIVE.get)
    lam = instrument.observed_wavelength_um(top, z)
    f_top = snr * flux_error(g, lam, err_level, sigma) / RELATIVE[top]
    fluxes = {name: RELATIVE[name] * f_top for name in lines}
    continuum = err_level * (0.3 + 0.4 * (wave - wave[0]) / (wave[-1] - wave[0]))
    clean = fit.line_model(wave, z, g, fluxes, velocity, sigma) + continuum
    noisy = clean + rng.standard_normal((n_real, wave.size)) * err
    return wave, clean, noisy, err, fluxes


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


def test_channel_edges_of_a_uniform_grid():
    wave = 2.0 + 0.001 * np.arange(5)
    edges = fit.channel_edges_um(wave)
    np.testing.assert_allclose(edges, 1.9995 + 0.001 * np.arange(6))


def test_channel_edges_reject_bad_grids():
    with pytest.raises(ValueError):
        fit.channel_edges_um([2.0, 1.9, 2.1])


@pytest.mark.parametrize(
    "grating,z,sigma",
    [("g235m", 5.1, 10.0), ("g395m", 4.6, 150.0), ("g395h", 5.3, 30.0), ("g395h", 4.5, 400.0)],
)
def test_line_model_integrates_to_the_line_flux(grating, z, sigma):
    g = instrument.get_grating(grating)
    wave = g.wavelength_grid()
    dlam_A = np.diff(fit.channel_edges_um(wave)) * 1e4
    for line in instrument.lines_in_grating(g, z):
        model = fit.line_model(wave, z, g, {line: 2.5e-18}, velocity_kms=-70.0, sigma_kms=sigma)
        assert np.sum(model * dlam_A) == pytest.approx(2.5e-18, rel=1e-10)


def test_line_model_peaks_at_the_shifted_wavelength():
    g = instrument.get_grating("g395h")
    wave = g.wavelength_grid()
    z, v = 5.0, 300.0
    model = fit.line_model(wave, z, g, {"HA": 1e-17}, velocity_kms=v, sigma_kms=50.0)
    expected = instrument.TRANSITIONS["HA"] * (1 + z) * (1 + v / instrument.C_KMS) * 1e-4
    centroid = np.sum(model * wave) / np.sum(model)
    assert centroid == pytest.approx(expected, abs=0.02 * g.dlam_um)


# ---------------------------------------------------------------------------
# fits of noiseless spectra: exact recovery
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fast", "lmfit"])
def test_noiseless_spectrum_is_recovered(method):
    wave, clean, _, err, fluxes = synthetic("g395m", 5.1, 20.0, 1, seed=1, velocity=-35.0, sigma=90.0)
    res = fit.fit_spectra(wave, clean, err, 5.1, "g395m", method=method)
    assert res.lines == tuple(fluxes)
    for line, value in fluxes.items():
        assert res.flux[line][0] == pytest.approx(value, rel=1e-5)
    assert res.velocity_kms[0] == pytest.approx(-35.0, abs=1e-2)
    assert res.sigma_kms[0] == pytest.approx(90.0, abs=1e-2)
    assert res.chi2[0] == pytest.approx(0.0, abs=1e-6)


def test_tied_ratios_are_exact():
    wave, _, noisy, err, _ = synthetic("g395m", 5.1, 8.0, 5, seed=2)
    res = fit.fit_spectra(wave, noisy, err, 5.1, "g395m")
    np.testing.assert_allclose(res.flux["OIII4959"], res.flux["OIII5007"] / 3.0, rtol=1e-12)
    np.testing.assert_allclose(res.flux["NII6548"], res.flux["NII6583"] / 3.0, rtol=1e-12)


def test_oii_doublet_is_one_line():
    wave, clean, _, err, fluxes = synthetic("g235m", 5.2, 30.0, 1, seed=3)
    assert "OII3728" in fluxes
    res = fit.fit_spectra(wave, clean, err, 5.2, "g235m")
    assert res.flux["OII3728"][0] == pytest.approx(fluxes["OII3728"], rel=1e-5)


def test_higher_order_continuum():
    g = instrument.get_grating("g395m")
    wave = g.wavelength_grid()
    z = 4.8
    lines = {"HA": 4e-18, "NII6583": 6e-19, "NII6548": 2e-19}
    x = (wave - 3.8) / 0.5
    continuum = 1e-20 * (1.0 + 0.5 * x + 0.8 * x**2)
    flux = fit.line_model(wave, z, g, lines, 10.0, 60.0) + continuum
    err = np.full(wave.size, 1e-20)
    res = fit.fit_spectra(wave, flux, err, z, g, lines=list(lines), cont_order=2)
    for line, value in lines.items():
        assert res.flux[line][0] == pytest.approx(value, rel=1e-5)


def test_model_reproduces_the_fitted_spectrum():
    wave, clean, _, err, fluxes = synthetic("g395h", 5.4, 30.0, 1, seed=4)
    res = fit.fit_spectra(wave, clean, err, 5.4, "g395h")
    model = res.model(wave)
    inside = np.isfinite(model)
    assert inside.sum() > 100
    for lo, hi in res.windows_um:
        assert np.all(inside[(wave > lo) & (wave < hi)])
    np.testing.assert_allclose(model[inside], clean[inside], rtol=0, atol=1e-4 * clean.max())
    dlam_A = np.diff(fit.channel_edges_um(wave)) * 1e4
    total = sum(fluxes.values())
    assert np.sum(res.model(wave, part="lines") * dlam_A) == pytest.approx(total, rel=1e-5)
    with pytest.raises(ValueError):
        res.model(wave, part="everything")


# ---------------------------------------------------------------------------
# the fast fitter against the lmfit reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "grating,z,snr,seed",
    [
        ("g395m", 4.45, 3.0, 11),
        ("g395m", 5.15, 12.0, 12),
        ("g235m", 5.2, 6.0, 13),
        ("g395h", 4.7, 3.0, 14),
        ("g395h", 5.6, 50.0, 15),
    ],
)
def test_fast_agrees_with_lmfit(grating, z, snr, seed):
    wave, _, noisy, err, _ = synthetic(grating, z, snr, 16, seed=seed)
    fast = fit.fit_spectra(wave, noisy, err, z, grating, method="fast")
    ref = fit.fit_spectra(wave, noisy, err, z, grating, method="lmfit")
    assert fast.lines == ref.lines
    assert np.all(fast.success) and np.all(ref.success)
    for line in ref.lines:
        sigma_f = np.std(ref.flux[line])
        assert np.max(np.abs(fast.flux[line] - ref.flux[line])) < 0.01 * sigma_f, line
    assert np.max(np.abs(fast.velocity_kms - ref.velocity_kms)) < 1.0
    # the fast fitter finds the same (or a lower) minimum
    assert np.all(fast.chi2 <= ref.chi2 + 1e-4)


def test_two_components_agree_and_recover_the_total():
    g = instrument.get_grating("g395h")
    wave = g.wavelength_grid()
    z = 5.0
    lines = {"HA": 6e-18, "NII6583": 1.5e-18, "NII6548": 5e-19}
    broad = {k: 0.6 * v for k, v in lines.items()}
    clean = fit.line_model(wave, z, g, lines, 0.0, 40.0) + fit.line_model(wave, z, g, broad, -120.0, 250.0)
    err = np.full(wave.size, 1e-20)
    rng = np.random.default_rng(5)
    noisy = clean + rng.standard_normal((4, wave.size)) * err
    kwargs = dict(lines=list(lines), n_components=2)
    fast = fit.fit_spectra(wave, noisy, err, z, g, **kwargs)
    ref = fit.fit_spectra(wave, noisy, err, z, g, method="lmfit", **kwargs)
    exact = fit.fit_spectra(wave, clean, err, z, g, **kwargs)
    for line in lines:
        assert exact.flux[line][0] == pytest.approx(lines[line] + broad[line], rel=1e-4)
        np.testing.assert_allclose(fast.flux[line], ref.flux[line], rtol=1e-3)
    assert exact.component_flux["HA"][0] == pytest.approx([6e-18, 3.6e-18], rel=1e-4)
    assert exact.velocity_kms[0] == pytest.approx(0.0, abs=0.05)
    assert exact.sigma2_kms[0] == pytest.approx(250.0, abs=0.05)
    assert exact.velocity2_kms[0] == pytest.approx(-120.0, abs=0.05)
    assert np.all(fast.sigma_kms <= fast.sigma2_kms)
    np.testing.assert_allclose(fast.velocity_kms, ref.velocity_kms, atol=1.0)


# ---------------------------------------------------------------------------
# internals of the fast fitter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_components", [1, 2])
def test_projected_chi2_gradient_and_hessian(n_components):
    wave, _, noisy, err, _ = synthetic("g395m", 5.15, 10.0, 3, seed=6)
    g = instrument.get_grating("g395m")
    lines = instrument.lines_in_grating(g, 5.15)
    problem, data = fit.model._prepare(wave, noisy, err, 5.15, g, lines, n_components, 1, 3000.0)
    ((_, ctx),) = fit.fast._contexts(problem, data)
    theta = np.array([[30.0, 80.0, -90.0, 220.0], [-10.0, 20.0, 50.0, 150.0], [0.0, 300.0, 10.0, 40.0]])
    theta = theta[:, : 2 * n_components]
    chi2, _, grad, hess, beta = ctx.evaluate(theta, order=2, linear=True)
    # the stencil evaluation equals plain least squares on all channels
    beta_dense, chi2_dense = fit.model._dense_linear(problem, data, theta)
    np.testing.assert_allclose(chi2, chi2_dense, rtol=1e-8)
    np.testing.assert_allclose(beta, beta_dense, rtol=1e-6, atol=1e-8 * np.abs(beta_dense).max())
    # derivatives with respect to (v, sigma^2) against central differences
    p = fit.fast._to_internal(theta)
    for j in range(p.shape[1]):
        h = 1e-3 if j % 2 == 0 else 1e-2
        up, down = p.copy(), p.copy()
        up[:, j] += h
        down[:, j] -= h
        c_up, _, g_up = ctx.evaluate(fit.fast._to_theta(up), order=1)
        c_down, _, g_down = ctx.evaluate(fit.fast._to_theta(down), order=1)
        np.testing.assert_allclose(2 * grad[:, j], (c_up - c_down) / (2 * h), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(hess[:, :, j], (g_up - g_down) / (2 * h), rtol=1e-4, atol=1e-7)


def test_realisations_are_fitted_independently():
    wave, _, noisy, err, _ = synthetic("g395m", 5.15, 6.0, 6, seed=7)
    together = fit.fit_spectra(wave, noisy, err, 5.15, "g395m")
    for i in (0, 3, 5):
        alone = fit.fit_spectra(wave, noisy[i], err, 5.15, "g395m")
        for line in alone.lines:
            scale = np.std(together.flux[line])
            assert alone.flux[line][0] == pytest.approx(together.flux[line][i], abs=1e-4 * scale)
        assert alone.velocity_kms[0] == pytest.approx(together.velocity_kms[i], abs=1e-3)


def _fit_table(result):
    """Per-realisation flux, velocity, sigma and chi^2 of a fit, as one array."""
    cols = [result.flux[line] for line in result.lines]
    cols += [result.velocity_kms, result.sigma_kms, result.chi2]
    if result.n_components == 2:
        cols += [result.velocity2_kms, result.sigma2_kms]
    return np.column_stack(cols)


@pytest.mark.parametrize(
    "grating,z,snr,n_components,cont_order,nan",
    [
        ("g395m", 5.15, 6.0, 1, 1, False),
        ("g395m", 5.15, 6.0, 2, 1, False),
        ("g395m", 4.45, 3.0, 1, 0, True),
        ("g395m", 5.15, 10.0, 2, 2, True),
        ("g235m", 5.2, 6.0, 1, 2, False),
        ("g235m", 4.5, 8.0, 2, 0, True),
        ("g395h", 5.4, 5.0, 1, 1, True),
        ("g395h", 4.7, 12.0, 2, 1, False),
    ],
)
def test_batch_invariance(grating, z, snr, n_components, cont_order, nan):
    """A realisation's fit is bit-identical whichever realisations share the call."""
    wave, _, noisy, err, _ = synthetic(grating, z, snr, 12, seed=31)
    noisy = noisy.copy()
    if nan:  # masks differing between realisations: several channel-mask contexts
        rng = np.random.default_rng(32)
        for i in (1, 4, 5, 9):
            j = rng.integers(0, wave.size - 20)
            noisy[i, j : j + rng.integers(1, 20)] = np.nan
        noisy[7, rng.integers(0, wave.size, 40)] = np.nan
        noisy[10, ::9] = np.nan
    kwargs = dict(n_components=n_components, cont_order=cont_order)
    whole = _fit_table(fit.fit_spectra(wave, noisy, err, z, grating, **kwargs))
    halves = np.concatenate(
        [_fit_table(fit.fit_spectra(wave, noisy[rows], err, z, grating, **kwargs)) for rows in (slice(0, 6), slice(6, 12))]
    )
    singles = np.concatenate(
        [_fit_table(fit.fit_spectra(wave, noisy[i], err, z, grating, **kwargs)) for i in range(12)]
    )
    assert np.all(np.isfinite(whole[:, -3:]))
    assert np.array_equal(whole, halves, equal_nan=True)
    assert np.array_equal(whole, singles, equal_nan=True)
    line = instrument.lines_in_grating(instrument.get_grating(grating), z)[-1]
    flux3 = fit.three_channel_flux(wave, noisy, z, line, grating)
    flux3_single = [fit.three_channel_flux(wave, noisy[i], z, line, grating) for i in range(12)]
    assert np.array_equal(flux3, flux3_single, equal_nan=True)


def test_window_without_data_in_one_realisation():
    """Only that realisation loses the lines of the window."""
    wave, _, noisy, err, _ = synthetic("g395m", 5.15, 10.0, 4, seed=33)
    noisy = noisy.copy()
    lam = instrument.observed_wavelength_um("HB", 5.15)
    ((lo, hi),) = [win for win in fit.fit_spectra(wave, noisy, err, 5.15, "g395m").windows_um if win[0] <= lam <= win[1]]
    noisy[2, (wave >= lo) & (wave <= hi)] = np.nan  # the whole H-beta + [O III] window
    res = fit.fit_spectra(wave, noisy, err, 5.15, "g395m")
    for line in ("HB", "OIII4959", "OIII5007"):
        assert np.isnan(res.flux[line][2])
        assert np.all(np.isfinite(res.flux[line][[0, 1, 3]]))
    assert np.all(np.isfinite(res.flux["HA"]))
    alone = fit.fit_spectra(wave, noisy[2], err, 5.15, "g395m")
    assert np.array_equal(_fit_table(alone)[0], _fit_table(res)[2], equal_nan=True)
    assert alone.dof[0] == res.dof[2] < res.dof[0]


# ---------------------------------------------------------------------------
# bad data
# ---------------------------------------------------------------------------


def test_nan_and_bad_error_channels_are_excluded():
    wave, _, noisy, err, _ = synthetic("g395m", 5.15, 10.0, 2, seed=8)
    bad = np.zeros(wave.size, dtype=bool)
    bad[::7] = True
    with_nan = noisy.copy()
    with_nan[:, bad] = np.nan
    garbage = noisy.copy()
    garbage[:, bad] = 1e-10
    bad_err = err.copy()
    bad_err[bad] = 0.0
    a = fit.fit_spectra(wave, with_nan, err, 5.15, "g395m")
    b = fit.fit_spectra(wave, garbage, bad_err, 5.15, "g395m")
    for line in a.lines:
        assert np.all(np.isfinite(a.flux[line]))
        np.testing.assert_allclose(a.flux[line], b.flux[line], rtol=1e-9)


def test_nan_in_some_realisations_only():
    wave, _, noisy, err, _ = synthetic("g395m", 5.15, 10.0, 3, seed=9)
    noisy = noisy.copy()
    noisy[1, 100:110] = np.nan
    res = fit.fit_spectra(wave, noisy, err, 5.15, "g395m")
    single = fit.fit_spectra(wave, noisy[1], err, 5.15, "g395m")
    assert res.flux["HA"][1] == pytest.approx(single.flux["HA"][0], rel=1e-6)
    assert res.dof[1] == res.dof[0] - np.count_nonzero(np.isin(np.arange(100, 110), res._problem.fit_chan))


def test_line_in_a_gap_is_nan():
    wave, _, noisy, err, _ = synthetic("g395m", 5.15, 10.0, 2, seed=10)
    lam = instrument.observed_wavelength_um("HB", 5.15)
    noisy = noisy.copy()
    noisy[:, np.abs(wave - lam) < 0.02] = np.nan
    res = fit.fit_spectra(wave, noisy, err, 5.15, "g395m")
    assert np.all(np.isnan(res.flux["HB"]))
    assert np.all(np.isfinite(res.flux["HA"]))


@pytest.mark.parametrize("kind", ["nan", "err"])
def test_spectrum_without_valid_channels_raises(kind):
    g = instrument.get_grating("g395m")
    wave = g.wavelength_grid()
    flux = np.full(wave.size, np.nan) if kind == "nan" else np.ones(wave.size)
    err = np.ones(wave.size) if kind == "nan" else np.zeros(wave.size)
    with pytest.raises(ValueError) as info:
        fit.fit_spectra(wave, flux, err, 5.0, "g395m")
    assert "\n" not in str(info.value)


def test_invalid_arguments_raise():
    wave, clean, _, err, _ = synthetic("g395m", 5.15, 10.0, 1, seed=11)
    with pytest.raises(ValueError):
        fit.fit_spectra(wave, clean, err, 5.15, "g395m", method="magic")
    with pytest.raises(ValueError):
        fit.fit_spectra(wave, clean, err, 5.15, "g395m", n_components=3)
    with pytest.raises(ValueError):
        fit.fit_spectra(wave, clean[:-1], err, 5.15, "g395m")
    with pytest.raises(ValueError):
        fit.fit_spectra(wave, clean, err, 5.15, "g395m", lines=["HALPHA"])
    with pytest.raises(ValueError):
        fit.fit_spectra(wave, clean, err, 5.15, "g140m")
    with pytest.raises(ValueError):  # no line of the model in the band
        fit.fit_spectra(wave, clean, err, 20.0, "g395m")


# ---------------------------------------------------------------------------
# noise: negative fluxes, symmetry
# ---------------------------------------------------------------------------


def test_fluxes_of_pure_noise_are_symmetric_about_zero():
    g = instrument.get_grating("g395m")
    wave = g.wavelength_grid()
    err = np.full(wave.size, 1e-20)
    noise = np.random.default_rng(12).standard_normal((40, wave.size)) * err
    plus = fit.fit_spectra(wave, noise, err, 5.15, g)
    minus = fit.fit_spectra(wave, -noise, err, 5.15, g)
    for line in plus.lines:
        assert np.any(plus.flux[line] < 0) and np.any(plus.flux[line] > 0)
        np.testing.assert_allclose(minus.flux[line], -plus.flux[line], rtol=1e-6, atol=1e-6 * np.std(plus.flux[line]))
    np.testing.assert_allclose(minus.velocity_kms, plus.velocity_kms, atol=1e-3)


# ---------------------------------------------------------------------------
# three-channel sums for upper limits
# ---------------------------------------------------------------------------


def test_three_channel_flux():
    g = instrument.get_grating("g395m")
    wave = g.wavelength_grid()
    z = 5.0
    lam = instrument.observed_wavelength_um("NII6583", z)
    i = int(np.argmin(np.abs(wave - lam)))
    flux = np.zeros((2, wave.size))
    flux[0, i - 1 : i + 2] = [1.0, 2.0, 3.0]
    flux[1, i - 2] = 100.0  # outside the three channels
    flux[1, i + 2] = 100.0
    dlam_A = g.dlam_um * 1e4
    sums = fit.three_channel_flux(wave, flux, z, "NII6583", "g395m")
    np.testing.assert_allclose(sums, [6.0 * dlam_A, 0.0], rtol=1e-9, atol=1e-12)
    assert fit.three_channel_flux(wave, flux[0], z, "NII6583", g) == pytest.approx(6.0 * dlam_A)
    with pytest.raises(ValueError):
        fit.three_channel_flux(wave, flux, z, "OII3728", "g395m")


# ---------------------------------------------------------------------------
# figure 2 (spectra with their fits)
# ---------------------------------------------------------------------------


def test_fig2_writes_pdf_and_png(tmp_path):
    from ismcgm.plots import fig2_spectra

    panels = []
    for label, snr, seed in (("ISM", 30.0, 20), ("CGM", 6.0, 21)):
        wave, _, noisy, err, _ = synthetic("g395m", 5.15, snr, 1, seed=seed)
        res = fit.fit_spectra(wave, noisy[0], err, 5.15, "g395m")
        panels.append(dict(label=label, wave_um=wave, flux=noisy[0], err=err, model=res.model(wave), z=5.15, grating="g395m"))
    pdf, png = tmp_path / "fig2.pdf", tmp_path / "fig2.png"
    fig2_spectra.plot_fig2(panels, pdf, png, title="test", synthetic=True)
    assert pdf.stat().st_size > 1000 and png.stat().st_size > 1000
    with pytest.raises(ValueError):
        fig2_spectra.plot_fig2([dict(label="x")], pdf, png)
