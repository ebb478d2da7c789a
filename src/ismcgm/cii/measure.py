"""[C II] of the mask regions of one galaxy: extraction, the lmfit Gaussian fit, the Monte Carlo errors and the per-galaxy driver (:func:`measure_galaxy`).

Pipeline for one galaxy (:func:`measure_galaxy`)
------------------------------------------------
1. :func:`read_alma_cube` reads the cube (Jy/beam, BMAJ/BMIN/BPA, a FREQ axis).
2. :func:`reproject_masks` carries the IFU masks (``ISM``, ``CGM`` or
   ``ISM_A`` ... ``CGM_B``) onto the ALMA pixel grid through the sky
   coordinates of both WCSs.
3. :func:`extract_cii` sums ``weights x cube`` per channel and divides by the
   beam area in pixels (Jy/beam -> Jy), on a radio-convention velocity axis
   around the redshifted line.
4. :func:`fit_cii` fits one or two Gaussians (plus an optional constant,
   off by default -- see below) with ``lmfit`` (the default one-Gaussian model
   through :mod:`ismcgm.cii.fastfit`, lmfit's computation bit for bit without
   its bookkeeping); the flux is the sum of the Gaussian integrals [Jy km/s],
   converted to erg/s/cm2 by :func:`jykms_to_cgs`.
5. :func:`mc_cii` gives the Monte Carlo error with beam-correlated noise
   (below); :func:`analytic_errors` gives analytic alternatives.
6. :func:`transfer_matrix_from_cube` and :func:`spill_corrected` undo the
   beam spill between the regions (below).
7. :func:`cii_ratio_table` forms F[C II]/F(Ha, dust-corrected) per region
   and Delta log(Ha/Hb)_CGM-ISM for Fig. 6.

Fit choices
-----------
Centres are kept within +-300 km/s of systemic and dispersions between half
a channel and 400 km/s (``v_max_offset``, ``sigma_max``).  Without a
starting point the fit is started from a few (centre, width) pairs and the
lowest chi^2 is kept; MC realisations start from the nominal best fit.  The
constant is fixed at 0 by default (``continuum=False``): ALMA cubes are
continuum-subtracted in the uv plane, and a free constant is degenerate
with the line wings over the mock's +-720 km/s bands (the flux pulls
measured both ways are in the README, "Measured on the mock").
``continuum=True`` restores the "Gaussian(s) + constant" model for cubes
with continuum left in.

Detection
---------
A region is detected when ``flux / flux_err >= detect_snr`` (default 3).
Otherwise the 3-sigma upper limit is 3 x the MC standard deviation of the
spectrum integrated over ``ul_window_kms`` (default 300 km/s) centred on
the systemic velocity (the analogue of the three-channel sum of SPEC
section 5 for a ~300 km/s wide [C II] line).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from .. import instrument as ins
from ..maskio import read_masks
from ..ratios import MEASUREMENT_COLUMNS
from .fastfit import initial_guess, leastsq_gaussian
from .cube import AlmaCube, check_line_coverage, jykms_to_cgs, read_alma_cube
from .noise import (
    analytic_errors,
    joint_noise_spectra,
    beam_kernel,
    estimate_channel_rms,
    kernel_correlation_area,
    noise_autocorrelation,
    noise_spectra,
    signal_free_mask,
)
from .weights import region_names, reproject_masks

#: Column order of the per-region [C II] measurement table (:func:`measure_galaxy`).
CII_COLUMNS = MEASUREMENT_COLUMNS + (
    "flux_jykms",
    "flux_jykms_err",
    "flux_nominal_jykms",
    "err_naive_jykms",
    "err_beam_jykms",
    "err_acf_jykms",
    "velocity_kms",
    "sigma_kms",
    "n_gauss",
    "nu_obs_hz",
    "beam_area_pix",
    "coverage",
    "rms_jybeam",
    "corr_area_pix",
    "kernel_scale",
    "n_mc",
)


# ---------------------------------------------------------------------------
# extraction and fitting
# ---------------------------------------------------------------------------
@dataclass
class CiiSpectrum:
    """An extracted [C II] spectrum: ``flux_jy`` vs ``velocity`` [km/s] (channel order)."""

    velocity: np.ndarray
    flux_jy: np.ndarray
    nu_line_hz: float
    dv_kms: float


def extract_cii(alma: AlmaCube, weights, z: float, galaxy=None) -> CiiSpectrum:
    """[C II] spectrum [Jy] of one region: ``sum(w x cube) / beam_area_pix`` per channel.

    Parameters
    ----------
    alma : AlmaCube
    weights : ndarray (ny, nx)
        Fractional coverage weights (:func:`reproject_masks`).
    z : float
        Systemic redshift (defines the velocity axis).
    """
    nu = check_line_coverage(alma, z, galaxy)
    w = np.asarray(weights, dtype=float)
    sel = w > 0
    vals = alma.data[:, sel]
    spec = np.nansum(vals * w[sel], axis=1) / alma.beam_area_pix
    spec[~np.isfinite(vals).all(axis=1)] = np.nan
    v = ins.C_KMS * (1.0 - alma.freq_hz / nu)
    dv = ins.C_KMS * alma.channel_width_hz / nu
    return CiiSpectrum(v, spec, nu, float(dv))


@dataclass
class CiiFit:
    """Result of :func:`fit_cii`.

    ``flux`` is the sum of the Gaussian integrals [Jy km/s], ``flux_err`` its
    1-sigma error from the fit covariance (NaN when not available),
    ``components`` one ``(amplitude [Jy km/s], center [km/s], sigma [km/s])``
    per Gaussian, ``params`` the best-fit values (a start for refits).
    """

    flux: float
    flux_err: float
    components: list
    continuum: float
    success: bool
    redchi: float
    params: dict

    @property
    def velocity(self) -> float:
        """Flux-weighted centre [km/s]."""
        a = np.array([c[0] for c in self.components])
        v = np.array([c[1] for c in self.components])
        return float(np.sum(a * v) / np.sum(a)) if np.sum(a) != 0 else float(v[0])

    @property
    def sigma(self) -> float:
        """Dispersion [km/s] of the brightest component."""
        return float(max(self.components, key=lambda c: abs(c[0]))[2])

    def model(self, velocity) -> np.ndarray:
        v = np.asarray(velocity, dtype=float)
        out = np.full(v.shape, self.continuum)
        for a, c, s in self.components:
            out += a / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((v - c) / s) ** 2)
        return out


def _gauss_sum(v, params, n_gauss):
    out = np.full(v.shape, params["c_c"].value)
    for g in range(1, n_gauss + 1):
        a = params[f"g{g}_amplitude"].value
        c = params[f"g{g}_center"].value
        s = params[f"g{g}_sigma"].value
        out = out + a / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((v - c) / s) ** 2)
    return out


def _residual(params, v, y, w, n_gauss):
    r = _gauss_sum(v, params, n_gauss) - y
    return r * w if w is not None else r


def fit_cii(velocity, spectrum, err=None, n_gauss: int = 1, init: dict | None = None,
            v_max_offset: float = 300.0, sigma_max: float = 400.0, fix_kinematics: bool = False,
            continuum: bool = False, engine: str = "auto") -> CiiFit:
    """Fit Gaussian(s) + a constant to a [C II] spectrum with ``lmfit``.

    Parameters
    ----------
    velocity : array (n,)
        Velocity [km/s] (radio convention, 0 = systemic).
    spectrum : array (n,)
        Flux density [Jy]; NaN channels are left out.
    err : array (n,) or float, optional
        1-sigma errors [Jy]; with errors the covariance is not rescaled by the
        reduced chi^2 (``scale_covar=False``); without, it is.
    n_gauss : 1 or 2
        Number of Gaussians; the flux is the sum of their integrals.  With one
        Gaussian the amplitude may be negative (no positive bias on faint
        lines); with two both are >= 0 (no cancelling pairs) and the second is
        the broader one.
    init : dict, optional
        Starting values (e.g. ``CiiFit.params`` of the nominal fit).
    v_max_offset : float
        Gaussian centres are kept within +-``v_max_offset`` km/s of systemic
        (default 300 km/s).
    sigma_max : float
        Upper bound of the dispersions [km/s] (default 400); the lower bound
        is half a channel.
    fix_kinematics : bool
        Keep centres and dispersions at ``init`` (a linear fit of the
        amplitudes and the constant: a matched filter).
    continuum : bool
        Fit the constant.  Default False: the constant is fixed at 0, as
        for ALMA cubes whose continuum was subtracted in the uv plane (the
        usual product, and the mock).  A free constant is degenerate with
        the wings of broad lines when the band covers only a few hundred
        km/s of line-free channels (the mock: +-720 km/s), which makes the
        flux error distribution heavy-tailed; use True for cubes with
        continuum left in.
    engine : 'auto' or 'lmfit'
        ``lmfit``: ``lmfit.minimize`` (the reference).  ``auto`` (default): the
        same, except for one Gaussian without a constant with free kinematics and
        errors (the workflow's model), which calls MINPACK directly with lmfit's
        computation (:func:`ismcgm.cii.fastfit.leastsq_gaussian`): the same
        result bit for bit (``tests/test_cii.py``), without importing lmfit.

    Returns
    -------
    CiiFit
    """
    if engine not in ("auto", "lmfit"):
        raise ValueError(f"unknown engine {engine!r}: use 'auto' or 'lmfit'")
    if n_gauss not in (1, 2):
        raise ValueError(f"n_gauss must be 1 or 2, not {n_gauss!r}")
    v = np.asarray(velocity, dtype=float)
    y = np.asarray(spectrum, dtype=float)
    e = None if err is None else np.broadcast_to(np.asarray(err, dtype=float), y.shape)
    ok = np.isfinite(v) & np.isfinite(y)
    if e is not None:
        ok &= np.isfinite(e) & (e > 0)
    v, y = v[ok], y[ok]
    e = None if e is None else e[ok]
    npar = int(continuum) + (n_gauss if fix_kinematics else 3 * n_gauss)
    if v.size <= npar:
        raise ValueError(f"only {v.size} valid channels for a {n_gauss}-Gaussian fit")
    if fix_kinematics and not init:
        raise ValueError("fix_kinematics needs init (centres and dispersions)")
    dv = float(np.median(np.abs(np.diff(v))))
    vmax = min(v_max_offset, float(np.max(np.abs(v))))
    start = dict(initial_guess(v, y, n_gauss, vmax, dv))
    if init:
        start.update({k: val for k, val in init.items() if k in start and np.isfinite(val)})
    smin = 0.5 * dv
    if engine == "auto" and n_gauss == 1 and not continuum and not fix_kinematics and e is not None:
        comps, c_const, success, redchi, amp_cov, best = _fit_direct(v, y, e, start, init, vmax, smin, sigma_max)
    else:
        comps, c_const, success, redchi, amp_cov, best = _fit_lmfit(v, y, e, start, init, vmax, smin, sigma_max,
                                                                    n_gauss, fix_kinematics, continuum)
    flux = float(sum(c[0] for c in comps))
    flux_err = float("nan")
    if amp_cov is not None:
        flux_err = float(np.sqrt(max(amp_cov.sum(), 0.0)))
    if not np.isfinite(flux_err) and e is not None:
        # no covariance (a kinematic parameter at a bound): the amplitude
        # error at the best-fit kinematics (linear least squares)
        shapes = [np.exp(-0.5 * ((v - c) / s) ** 2) / (np.sqrt(2 * np.pi) * s) for _, c, s in comps]
        cols = ([np.ones_like(v)] if continuum else []) + shapes
        design = np.stack(cols, axis=1) / e[:, None]
        try:
            cov = np.linalg.inv(design.T @ design)[int(continuum):, int(continuum):]
            flux_err = float(np.sqrt(max(cov.sum(), 0.0)))
        except np.linalg.LinAlgError:
            pass
    return CiiFit(flux, flux_err, comps, c_const, success, redchi, best)


#: Starting points tried besides the initial guess when a fit has no ``init``: (centre in units of the
#: largest offset allowed, ``vmax``; sigma [km/s]); the lowest chi^2 is kept.
_EXTRA_STARTS = ((0.0, 60.0), (0.0, 150.0), (0.0, 250.0), (-0.5, 100.0), (0.5, 100.0))


def _better(trial_chisqr, best_chisqr) -> bool:
    """A start's fit replaces the best so far (the first always; then a chi^2 lower by > 1e-9 relative)."""
    return best_chisqr is None or (np.isfinite(trial_chisqr) and trial_chisqr < best_chisqr - 1e-9 * abs(best_chisqr))


def _clipped_start(center, sigma, vmax, smin, sigma_max):
    """A starting (centre, sigma) moved inside the bounds (sigma strictly inside)."""
    return float(np.clip(center, -vmax, vmax)), float(np.clip(sigma, smin * 1.01, sigma_max * 0.99))


def _extra_starts(vmax, smin, sigma_max):
    """The (centre, sigma) of :data:`_EXTRA_STARTS`, inside the bounds."""
    return [_clipped_start(vc * vmax, sg, vmax, smin, sigma_max) for vc, sg in _EXTRA_STARTS]


def _fit_direct(v, y, e, start, init, vmax, smin, sigma_max):
    """:func:`fit_cii` of one Gaussian without a constant by :func:`ismcgm.cii.fastfit.leastsq_gaussian`."""
    amp = start["g1_amplitude"]
    points = [_clipped_start(start["g1_center"], start["g1_sigma"], vmax, smin, sigma_max)]
    if not init:
        points += _extra_starts(vmax, smin, sigma_max)
    res = None
    for c0, s0 in points:
        trial = leastsq_gaussian(v, y, 1.0 / e, (amp, c0, s0), ((-vmax, vmax), (smin, sigma_max)))
        if _better(trial.chisqr, None if res is None else res.chisqr):
            res = trial
    best = {"c_c": 0.0, "g1_amplitude": res.amplitude, "g1_center": res.center, "g1_sigma": res.sigma}
    amp_cov = None if res.covar is None else np.asarray(res.covar)[np.ix_([0], [0])]
    return [(res.amplitude, res.center, res.sigma)], 0.0, bool(res.success), float(res.redchi), amp_cov, best


def _fit_lmfit(v, y, e, start, init, vmax, smin, sigma_max, n_gauss, fix_kinematics, continuum):
    """:func:`fit_cii` with ``lmfit.minimize``: (components, constant, success, redchi, amplitude covariance, best)."""
    import lmfit

    params = lmfit.Parameters()
    if continuum:
        params.add("c_c", value=start["c_c"])
    else:
        params.add("c_c", value=0.0, vary=False)
    for g in range(1, n_gauss + 1):
        amp = start[f"g{g}_amplitude"]
        if n_gauss == 2:
            params.add(f"g{g}_amplitude", value=max(amp, 1e-6 * (abs(start["g1_amplitude"]) + 1e-12)), min=0.0)
        else:
            params.add(f"g{g}_amplitude", value=amp)
        if fix_kinematics:
            params.add(f"g{g}_center", value=start[f"g{g}_center"], vary=False)
            params.add(f"g{g}_sigma", value=start[f"g{g}_sigma"], vary=False)
            continue
        center, sig = _clipped_start(start[f"g{g}_center"], start[f"g{g}_sigma"], vmax, smin, sigma_max)
        params.add(f"g{g}_center", value=center, min=-vmax, max=vmax)
        if g == 1:
            params.add("g1_sigma", value=sig, min=smin, max=sigma_max)
        else:  # second component broader: sigma2 = sigma1 + delta, delta >= 0
            dsig = float(np.clip(sig - params["g1_sigma"].value, 1.0, sigma_max))
            params.add("g2_dsigma", value=dsig, min=0.0, max=sigma_max)
            params.add("g2_sigma", expr="g1_sigma + g2_dsigma")
    w = None if e is None else 1.0 / e
    starts = [params]
    if not init and not fix_kinematics:
        # no starting point given: also start from a few (centre, width)
        # pairs and keep the lowest chi^2 (avoids noise spikes as local minima)
        for center, sig in _extra_starts(vmax, smin, sigma_max):
            alt = params.copy()
            alt["g1_center"].set(value=center)
            alt["g1_sigma"].set(value=sig)
            starts.append(alt)
    res = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for par in starts:
            trial = lmfit.minimize(_residual, par, args=(v, y, w, n_gauss), scale_covar=e is None)
            if _better(trial.chisqr, None if res is None else res.chisqr):
                res = trial
    p = res.params
    comps = [(float(p[f"g{g}_amplitude"].value), float(p[f"g{g}_center"].value), float(p[f"g{g}_sigma"].value))
             for g in range(1, n_gauss + 1)]
    amp_cov = None
    if res.covar is not None:
        names = list(res.var_names)
        idx = [names.index(f"g{g}_amplitude") for g in range(1, n_gauss + 1) if f"g{g}_amplitude" in names]
        if idx:
            amp_cov = np.asarray(res.covar)[np.ix_(idx, idx)]
    best = {k: float(p[k].value) for k in start}
    return (comps, float(p["c_c"].value), bool(res.success),
            float(res.redchi) if res.redchi is not None else float("nan"), amp_cov, best)


# ---------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------
@dataclass
class MCResult:
    """Monte Carlo [C II] flux of one region (fluxes in Jy km/s).

    ``fluxes``: fitted flux per realisation; ``realisations``: their spectra
    [Jy]; ``window_fluxes``: their integral over the upper-limit window;
    ``channel_err``: the per-channel errors used as fit weights.
    """

    flux: float
    flux_err: float
    fluxes: np.ndarray
    realisations: np.ndarray
    window_fluxes: np.ndarray
    nominal: CiiFit
    spectrum: CiiSpectrum
    channel_err: np.ndarray

    @property
    def fit_err(self) -> np.ndarray:
        """Per-channel errors [Jy] used as fit weights (``beam`` analytic errors)."""
        return self.channel_err

    @property
    def upper_limit_jykms(self) -> float:
        """3 x MC std of the spectrum integrated over the upper-limit window."""
        return float(3.0 * np.std(self.window_fluxes, ddof=1)) if self.window_fluxes.size > 1 else float("nan")


def window_flux(spec: CiiSpectrum, flux_jy, center_kms: float = 0.0, width_kms: float = 300.0) -> np.ndarray:
    """Flux [Jy km/s] integrated over channels within ``width/2`` of ``center`` (rows of ``flux_jy``)."""
    sel = np.abs(spec.velocity - center_kms) <= 0.5 * width_kms
    if not sel.any():
        sel = np.argmin(np.abs(spec.velocity - center_kms)) == np.arange(spec.velocity.size)
    return np.nansum(np.atleast_2d(flux_jy)[:, sel], axis=1) * spec.dv_kms


def fit_realisations(spec: CiiSpectrum, realisations, n_gauss: int, init: dict | None, err=None,
                     **fit_kw) -> np.ndarray:
    """Fitted fluxes [Jy km/s] of each row of ``realisations`` (NaN where a fit fails).

    ``fit_kw`` go to :func:`fit_cii` (e.g. ``fix_kinematics=True``).
    """
    out = np.empty(len(realisations))
    for j, y in enumerate(realisations):
        try:
            out[j] = fit_cii(spec.velocity, y, err=err, n_gauss=n_gauss, init=init, **fit_kw).flux
        except (ValueError, RuntimeError):
            out[j] = np.nan
    return out


def mc_cii(alma: AlmaCube, weights, z: float, component: str, region: str, seed: int, n_mc: int = 100,
           rms=None, n_gauss: int = 1, mode: str = "fast", kernel_scale: float = 1.0,
           signal_free=None, ul_window_kms: float = 300.0, galaxy=None, kinematics: str = "free",
           noise=None, **fit_kw) -> MCResult:
    """Monte Carlo [C II] flux and error of one region (see module doc).

    Parameters
    ----------
    alma, weights, z
        Cube, region weights, redshift.
    component, region, seed
        Keys of the random streams.
    n_mc : int or sequence of int
        Number of realisations, or the realisation indices to run (a batch).
    rms : array (n_chan,), optional
        Per-channel rms [Jy/beam]; default from :func:`estimate_channel_rms`
        on ``signal_free`` (default: pixels more than BMAJ from this region).
    n_gauss, mode, kernel_scale, ul_window_kms
        See :func:`fit_cii`, :func:`noise_spectra`, module doc.
    kinematics : 'free' or 'fixed'
        ``free``: every realisation is refitted with all parameters free
        (starting from the nominal fit); ``fixed``: centres and dispersions
        stay at the nominal fit (a matched filter: only amplitudes and the
        constant are refitted).
    noise : ndarray (n_real, n_chan), optional
        The noise spectra of the realisations (e.g. :func:`joint_noise_spectra`); default
        :func:`noise_spectra` of this region.
    fit_kw
        Extra :func:`fit_cii` arguments (``v_max_offset``, ``sigma_max``).
    """
    if kinematics not in ("free", "fixed"):
        raise ValueError(f"unknown kinematics {kinematics!r}: use 'free' or 'fixed'")
    spec = extract_cii(alma, weights, z, galaxy)
    if rms is None:
        sf = signal_free if signal_free is not None else signal_free_mask(alma, weights)
        rms = estimate_channel_rms(alma, sf, z, galaxy=galaxy)
    err_nom = analytic_errors(alma, weights, rms)["beam"]
    nominal = fit_cii(spec.velocity, spec.flux_jy, err=err_nom, n_gauss=n_gauss, **fit_kw)
    if noise is None:
        noise = noise_spectra(alma, weights, rms, seed, component, region, n_mc, kernel_scale, mode)
    reals = spec.flux_jy[None, :] + noise
    fluxes = fit_realisations(spec, reals, n_gauss, nominal.params, err=err_nom,
                              fix_kinematics=kinematics == "fixed", **fit_kw)
    good = np.isfinite(fluxes)
    flux = float(np.median(fluxes[good])) if good.any() else float("nan")
    err = float(np.std(fluxes[good], ddof=1)) if good.sum() > 1 else float("nan")
    wf = window_flux(spec, reals, 0.0, ul_window_kms)
    return MCResult(flux, err, fluxes, reals, wf, nominal, spec, err_nom)


# ---------------------------------------------------------------------------
# one galaxy
# ---------------------------------------------------------------------------
def measure_galaxy(alma, masks, mask_wcs: WCS | None, galaxy: str, z: float, seed: int, n_mc: int = 100,
                   n_gauss: int = 1, detect_snr: float = 3.0, mode: str = "fast", kernel_scale=1.0,
                   rms_mode: str = "channel", min_coverage: float = 0.9, ul_window_kms: float = 300.0,
                   continuum: bool = False, v_max_offset: float = 300.0, sigma_max: float = 400.0,
                   joint_noise: bool = False):
    """[C II] of every mask region of one galaxy.

    Parameters
    ----------
    alma : AlmaCube or path
    masks : dict or path
        ``{name: bool array}`` (extension names ``ISM``, ``CGM``, ``ISM_A`` ...),
        or a mask file ``results/masks/<variant>/<id>.fits`` (then
        ``mask_wcs=None``: read with :func:`ismcgm.maskio.read_masks`).
    mask_wcs : WCS or None
        Aligned celestial WCS of the masks.
    galaxy, z, seed
        Galaxy id, redshift, workflow seed.
    kernel_scale : float or 'auto'
        MC kernel size in beams; ``'auto'`` matches the measured noise
        correlation area.
    continuum, v_max_offset, sigma_max
        Fit options (:func:`fit_cii`).
    joint_noise : bool
        Draw the realisations of all regions from one noise field each
        (:func:`joint_noise_spectra`, keyed by the galaxy id), so that adjacent
        regions have the noise correlation of the beam (the radial profiles'
        annuli); default False: each region its own draws (:func:`noise_spectra`,
        the two regions' keys).

    Returns
    -------
    table : pandas.DataFrame
        One row per region, columns :data:`CII_COLUMNS`.
    spectra : dict
        ``{(component, region): (CiiSpectrum, CiiFit, MCResult)}``.
    """
    import pandas as pd

    fit_kw = {"continuum": continuum, "v_max_offset": v_max_offset, "sigma_max": sigma_max}
    if not isinstance(alma, AlmaCube):
        alma = read_alma_cube(alma, galaxy)
    if mask_wcs is None:
        masks, mask_wcs, _ = read_masks(masks)
    weights = reproject_masks(masks, mask_wcs, alma, galaxy, min_coverage)
    check_line_coverage(alma, z, galaxy)
    sf = signal_free_mask(alma, weights)
    rms = estimate_channel_rms(alma, sf, z, mode=rms_mode, galaxy=galaxy)
    rho = noise_autocorrelation(alma, sf, z)
    corr_area = float(rho.sum())
    if kernel_scale == "auto":
        model_area = kernel_correlation_area(beam_kernel(alma, 1.0))
        kscale = float(np.sqrt(corr_area / model_area)) if corr_area > 0 else 1.0
    else:
        kscale = float(kernel_scale)
    joint = (joint_noise_spectra(alma, dict(weights.items()), rms, seed, galaxy, n_mc, kscale) if joint_noise
             else {})
    rows, spectra = [], {}
    for name, w in weights.items():
        component, region = region_names(galaxy, name)
        res = mc_cii(alma, w, z, component, region, seed, n_mc, rms=rms, n_gauss=n_gauss, mode=mode,
                     kernel_scale=kscale, ul_window_kms=ul_window_kms, galaxy=galaxy, noise=joint.get(name), **fit_kw)
        spec = res.spectrum
        errs = analytic_errors(alma, w, rms, rho)
        an = {}
        for key in ("naive", "beam", "acf"):
            try:
                an[key] = fit_cii(spec.velocity, spec.flux_jy, err=errs[key], n_gauss=n_gauss, init=res.nominal.params,
                                  **fit_kw).flux_err
            except ValueError:
                an[key] = float("nan")
        nu = spec.nu_line_hz
        snr = res.flux / res.flux_err if res.flux_err > 0 else float("nan")
        detected = bool(np.isfinite(snr) and snr >= detect_snr)
        rows.append({
            "id": galaxy,
            "component": component,
            "region": region,
            "line": "CII",
            "flux": float(jykms_to_cgs(res.flux, nu)),
            "flux_err": float(jykms_to_cgs(res.flux_err, nu)),
            "snr": snr,
            "detected": detected,
            "upper_limit": float("nan") if detected else float(jykms_to_cgs(res.upper_limit_jykms, nu)),
            "flux_jykms": res.flux,
            "flux_jykms_err": res.flux_err,
            "flux_nominal_jykms": res.nominal.flux,
            "err_naive_jykms": an["naive"],
            "err_beam_jykms": an["beam"],
            "err_acf_jykms": an["acf"],
            "velocity_kms": res.nominal.velocity,
            "sigma_kms": res.nominal.sigma,
            "n_gauss": int(n_gauss),
            "nu_obs_hz": nu,
            "beam_area_pix": alma.beam_area_pix,
            "coverage": weights.coverage[name],
            "rms_jybeam": float(np.nanmedian(rms)),
            "corr_area_pix": corr_area,
            "kernel_scale": kscale,
            "n_mc": int(res.fluxes.size),
        })
        spectra[(component, region)] = (spec, res.nominal, res)
    return pd.DataFrame(rows, columns=list(CII_COLUMNS)), spectra
