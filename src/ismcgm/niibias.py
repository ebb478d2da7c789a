"""[N II] S/N bias test (SPEC section 12, paper Appendix B).

The paper simulated [N II] 6548, 6583 + Halpha blends at S/N([N II]6583) =
3, 5, 10, 20, refitted them many times and found that at S/N < 5 the fitted
[N II]6583 flux underestimates the true one by a factor ~2 (with *their*
fitter, q3dfit).  This module repeats the test with the project's own fast
fitter (:func:`ismcgm.fit.fit_spectra`, ``method="fast"``) and reports what
it gives -- nothing is tuned towards the paper's number.

The simulation
--------------
* Lines: [N II]6548, Halpha and [N II]6583 at redshift ``z`` with one
  velocity offset and intrinsic dispersion (``velocity_kms``,
  ``sigma_kms``), [N II]6548 = [N II]6583 / 3 and Halpha = ``ha_over_nii``
  x [N II]6583, built with :func:`ismcgm.fit.line_model` (channel-integrated
  Gaussians with the grating's LSF; G395M by default).  The continuum is
  zero (the fit still fits a Legendre continuum of order
  ``continuum_order``, as in the pipeline).
* Channels: the grating's stage-3 channels that the fitter's window
  (``+-window_kms`` around every transition, merged) covers, so every
  simulated channel is fitted and the fit sees exactly the simulated data.
* Noise: white Gaussian noise of the same standard deviation ``s`` in every
  channel (the fit is given ``err = s``).

Calibrating the noise to an S/N
-------------------------------
S/N([N II]6583) is defined as the true [N II]6583 flux divided by its 1-sigma
error in a fit of *known shape*: with the velocity, dispersion and LSF fixed
at their true values the model is linear in its parameters,
``y = A p + noise``, where the columns of ``A`` are the [N II] group profile
(unit [N II]6583 flux plus 1/3 of a unit [N II]6548, per A), the unit Halpha
profile and the Legendre continuum polynomials on the fitted channels.  The
weighted least-squares estimate has covariance ``s^2 (A^T A)^-1`` for white
noise of standard deviation ``s``, so

    sigma(F_6583) = s sqrt(C_00),   C = (A^T A)^-1,

and the per-channel noise that gives a requested S/N is

    s = F_6583 / (S/N sqrt(C_00))            (:func:`channel_noise`).

(The marginal variance ``C_00`` does not depend on how the continuum is
parametrised, only on the space the polynomials span.)  When the velocity
and dispersion are fitted too (as here) the [N II] error is slightly larger,
but Halpha is ``ha_over_nii`` times brighter and pins the kinematics, so the
empirical scatter of the fitted fluxes stays close to F/(S/N); the tests
check that it is within 20 % of it.

Seeding
-------
The draws at one S/N come from ``numpy.random.default_rng(SeedSequence(
[seed, h('nii_bias'), h(repr(float(snr)))]))`` with ``h`` a stable 64-bit
hash (SHA-256), so each S/N has its own stream: results do not depend on
the order or the other entries of the S/N list.

Output
------
:func:`nii_bias_table` returns one row per S/N with the columns
:data:`COLUMNS`: ``snr``, ``n_trials``, the median of fitted/true
[N II]6583 flux over the trials and its 16th and 84th percentiles.
Fitted fluxes are not bounded (negative values possible), as in the
pipeline; trials whose fit gives a non-finite flux are left out of the
percentiles (they are logged).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.polynomial import legendre

from . import fit, instrument, instruments, seeding
from .errors import InputError

log = logging.getLogger(__name__)

#: Defaults of the ``nii_bias`` config section.
DEFAULT_NII_BIAS_CONFIG = {
    "snr": [3, 5, 10, 20],
    "n_trials": 200,
    "z": 5.0,
    "grating": instruments.preference_order()[0],  # the best-ranked setup (G395M)
    "ha_over_nii": 10.0,
    "sigma_kms": 100.0,
    "velocity_kms": 0.0,
    "continuum_order": 1,
}

#: Columns of :func:`nii_bias_table`.
COLUMNS = ("snr", "n_trials", "median_fitted_over_true", "p16", "p84")

#: Lines simulated and fitted.
LINES = ("NII6548", "HA", "NII6583")

#: True [N II]6583 flux of the simulation [erg/s/cm^2]; the test is scale-free.
NII_FLUX = 1e-18

#: Fitting-window half-width [km/s] (the fitter's default).
WINDOW_KMS = fit.DEFAULT_WINDOW_KMS

#: Name mixed into the seed of the draws.
SEED_KEY = "nii_bias"


def merged_config(cfg: Mapping | None = None) -> dict:
    """:data:`DEFAULT_NII_BIAS_CONFIG` updated with ``cfg``."""
    out = dict(DEFAULT_NII_BIAS_CONFIG)
    out.update(dict(cfg or {}))
    return out


def seed_sequence(seed: int, snr: float) -> np.random.SeedSequence:
    """SeedSequence of the draws at one S/N, keyed by (seed, 'nii_bias', snr)."""
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return seeding.seed_sequence(seed, SEED_KEY, repr(float(snr)))


def rng_for(seed: int, snr: float) -> np.random.Generator:
    """Random generator of the trials at ``snr`` (see :func:`seed_sequence`)."""
    return np.random.default_rng(seed_sequence(seed, snr))


def _grating(name) -> instrument.Grating:
    return name if isinstance(name, instrument.Grating) else instrument.get_grating(name)


def simulation_wavelengths(z: float, grating=DEFAULT_NII_BIAS_CONFIG["grating"], window_kms: float = WINDOW_KMS) -> np.ndarray:
    """Channel centres [micron] of the grating inside the fitter's window around the blend.

    Raises
    ------
    ValueError
        If [N II] 6548, Halpha or [N II] 6583 is not inside the grating at ``z``.
    """
    g = _grating(grating)
    inside = instrument.lines_in_grating(g, z)
    if not all(line in inside for line in LINES):
        raise ValueError(
            f"[N II]+Halpha at z={z:g} is not inside {g.name} ({g.wmin_um}-{g.wmax_um} um); "
            "fix: choose nii_bias.z and nii_bias.grating so that 6549-6585 A (rest) is covered"
        )
    rest = np.array([instrument.TRANSITIONS[t] for t in ("NII6548", "HA", "NII6583")])
    obs = rest * (1.0 + z)
    lo = obs.min() * (1.0 - window_kms / instrument.C_KMS)
    hi = obs.max() * (1.0 + window_kms / instrument.C_KMS)
    wave = g.vacuum_grid()  # the workflow works in vacuum (MUSE: its air channels converted)
    wave_A = wave * 1e4
    return wave[(wave_A >= lo) & (wave_A <= hi)]


def true_fluxes(nii_flux: float = NII_FLUX, ha_over_nii: float = 10.0) -> dict:
    """Line fluxes of the simulated blend (the tied [N II] ratio of the fit)."""
    ratio = instrument.TIED_RATIOS["NII6548"][1]
    return {"NII6548": ratio * nii_flux, "HA": ha_over_nii * nii_flux, "NII6583": nii_flux}


def true_spectrum(wave_um, z, grating, fluxes, velocity_kms=0.0, sigma_kms=100.0) -> np.ndarray:
    """Noise-free F_lambda of the blend on ``wave_um`` (no continuum)."""
    return fit.line_model(wave_um, z, grating, fluxes, velocity_kms=velocity_kms, sigma_kms=sigma_kms)


def design_matrix(wave_um, z, grating, velocity_kms=0.0, sigma_kms=100.0, cont_order=1) -> np.ndarray:
    """Linear model of a known-shape fit: columns [N II] group, Halpha, Legendre continuum.

    The [N II] column is the profile of unit [N II]6583 flux plus the tied
    [N II]6548 (1/3); its coefficient is the [N II]6583 flux.
    """
    ratio = instrument.TIED_RATIOS["NII6548"][1]
    nii = fit.line_model(wave_um, z, grating, {"NII6583": 1.0, "NII6548": ratio}, velocity_kms, sigma_kms)
    ha = fit.line_model(wave_um, z, grating, {"HA": 1.0}, velocity_kms, sigma_kms)
    w = np.asarray(wave_um, dtype=float)
    x = (w - 0.5 * (w[0] + w[-1])) / (0.5 * (w[-1] - w[0]))
    cont = legendre.legvander(x, int(cont_order))
    return np.column_stack([nii, ha, cont])


def known_shape_flux_error(wave_um, z, grating, velocity_kms=0.0, sigma_kms=100.0, cont_order=1,
                           channel_sigma: float = 1.0) -> float:
    """1-sigma error of the [N II]6583 flux of a known-shape fit, for white noise ``channel_sigma``.

    ``channel_sigma sqrt([(A^T A)^-1]_00)`` (see the module docstring).
    """
    a = design_matrix(wave_um, z, grating, velocity_kms, sigma_kms, cont_order)
    # scale the columns for a well-conditioned inverse; the (0, 0) element is rescaled back
    norm = np.sqrt(np.sum(a * a, axis=0))
    cov = np.linalg.inv((a / norm).T @ (a / norm))
    return float(channel_sigma * np.sqrt(cov[0, 0]) / norm[0])


def channel_noise(snr: float, wave_um, z, grating, nii_flux=NII_FLUX, velocity_kms=0.0, sigma_kms=100.0,
                  cont_order=1) -> float:
    """Per-channel noise s with ``sigma(F_6583) = F_6583 / snr`` in a known-shape fit."""
    if not snr > 0:
        raise ValueError(f"S/N must be positive, got {snr}")
    unit = known_shape_flux_error(wave_um, z, grating, velocity_kms, sigma_kms, cont_order, 1.0)
    return float(nii_flux / (snr * unit))


def simulate(snr: float, n_trials: int, seed: int, cfg: Mapping | None = None, nii_flux: float = NII_FLUX):
    """Noisy realisations of the blend at one S/N.

    Returns
    -------
    wave_um : ndarray, shape (n_wave,)
    flux : ndarray, shape (n_trials, n_wave)
    err : ndarray, shape (n_wave,)
        The per-channel noise (constant).
    truth : dict
        True line fluxes.
    """
    c = merged_config(cfg)
    if int(n_trials) < 1:
        raise InputError(None, "config", f"nii_bias.n_trials must be >= 1, got {n_trials}", "set nii_bias.n_trials >= 1")
    g = _grating(c["grating"])
    z = float(c["z"])
    wave = simulation_wavelengths(z, g)
    truth = true_fluxes(nii_flux, float(c["ha_over_nii"]))
    model = true_spectrum(wave, z, g, truth, float(c["velocity_kms"]), float(c["sigma_kms"]))
    s = channel_noise(snr, wave, z, g, nii_flux, float(c["velocity_kms"]), float(c["sigma_kms"]),
                      int(c["continuum_order"]))
    noise = rng_for(seed, snr).standard_normal((int(n_trials), wave.size)) * s
    return wave, model[None, :] + noise, np.full(wave.size, s), truth


def fitted_over_true(snr: float, n_trials: int, seed: int, cfg: Mapping | None = None) -> np.ndarray:
    """Fitted / true [N II]6583 flux of every trial at one S/N (fast fitter, vectorised)."""
    c = merged_config(cfg)
    wave, flux, err, truth = simulate(snr, n_trials, seed, c)
    res = fit.fit_spectra(wave, flux, err, float(c["z"]), c["grating"], method="fast",
                          cont_order=int(c["continuum_order"]), n_components=1, lines=list(LINES),
                          window_kms=WINDOW_KMS)
    n_bad = int(np.count_nonzero(~np.asarray(res.success, dtype=bool)))
    if n_bad:
        log.info("S/N %g: %d of %d fits report no convergence", snr, n_bad, n_trials)
    return np.asarray(res.flux["NII6583"], dtype=float) / truth["NII6583"]


def summarise(snr: float, ratios) -> dict:
    """One row of :func:`nii_bias_table` from the fitted/true ratios of the trials."""
    r = np.asarray(ratios, dtype=float)
    ok = r[np.isfinite(r)]
    if ok.size < r.size:
        log.warning("S/N %g: %d of %d trials gave a non-finite flux and are left out", snr, r.size - ok.size, r.size)
    p16, p50, p84 = np.percentile(ok, [16, 50, 84]) if ok.size else (np.nan,) * 3
    return {"snr": float(snr), "n_trials": int(r.size), "median_fitted_over_true": float(p50),
            "p16": float(p16), "p84": float(p84)}


def nii_bias_table(cfg: Mapping | None = None, seed: int = 0) -> pd.DataFrame:
    """Median and 16/84 percentiles of fitted/true [N II]6583 flux per S/N.

    Parameters
    ----------
    cfg : mapping, optional
        The ``nii_bias`` config section (:data:`DEFAULT_NII_BIAS_CONFIG`).
    seed : int
        Global seed of the workflow.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, one row per S/N (in the order given).
    """
    c = merged_config(cfg)
    snrs: Sequence[float] = list(c["snr"])
    if not snrs:
        raise InputError(None, "config", "nii_bias.snr is empty", "list at least one S/N, e.g. [3, 5, 10, 20]")
    rows = []
    for snr in snrs:
        ratios = fitted_over_true(float(snr), int(c["n_trials"]), seed, c)
        row = summarise(float(snr), ratios)
        log.info("S/N %g: median fitted/true = %.3f (16-84%%: %.3f-%.3f), std = %.3f (1/SN = %.3f)",
                 snr, row["median_fitted_over_true"], row["p16"], row["p84"], float(np.nanstd(ratios, ddof=1)),
                 1.0 / float(snr))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))
