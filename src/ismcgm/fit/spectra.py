"""Tied-kinematics emission-line fitting of one grating's 1-D spectrum.

This module implements the line model of SPEC section 5 and two fitters that
share it:

``method="fast"``
    Variable projection.  For a given velocity offset ``v`` and intrinsic
    dispersion ``sigma`` (per kinematic component) the line amplitudes and the
    continuum coefficients enter the model linearly and are eliminated by
    weighted linear least squares (the continuum, which does not depend on
    ``v`` and ``sigma``, is projected out of the data once).  The remaining
    two (or four) nonlinear parameters are found by a grid scan of the
    projected chi^2 (line columns shared by all realisations, applied to the
    data on the channels near each line group only) and a batched, damped
    Newton refinement in ``(v, log(sigma**2 + s_L**2))`` with the analytic
    gradient and Hessian of the projected chi^2 (Golub & Pereyra 1973);
    typically three evaluations per realisation.  Gaussians are evaluated
    only within 6 observed sigma of their centres, on ragged per-line
    stencils flattened over all realisations (no padding to the widest
    line).  Everything is vectorised over the Monte Carlo realisations with
    numpy, yet the result of every realisation is bit-identical whichever
    other realisations are fitted in the same call (see "Batch invariance"
    below the fast fitter's heading).
``method="lmfit"``
    The reference: :class:`lmfit.Minimizer` (MINPACK ``leastsq``) on all
    parameters at once (``v``, ``sigma``, one amplitude per free line, the
    continuum coefficients), one realisation after the other, with the
    model evaluated on all fitted channels.  It starts from the same grid
    scan, so both fitters look for the same minimum.

Both minimise the same chi^2 with the same bounds; ``bench/fit_speed.py``
and ``tests/test_fit.py`` check that they agree.

The model
---------
All lines of :func:`ismcgm.instrument.lines_in_grating` share one velocity
offset ``v`` [km/s] with respect to the systemic redshift ``z`` and one
intrinsic dispersion ``sigma`` [km/s].  A transition of rest wavelength
``lam0`` is a Gaussian centred at ``lam0 (1 + z) (1 + v/c)`` whose
observed dispersion is ``sqrt(sigma**2 + sigma_LSF**2)`` [km/s], with the
instrumental ``sigma_LSF`` of :meth:`ismcgm.instrument.Grating.lsf_sigma_kms`
evaluated at the systemic observed wavelength ``lam0 (1 + z)`` (this keeps the
LSF independent of ``v``; the difference is of order ``v/c``).  The Gaussian
is integrated over each channel (differences of the normal CDF at the channel
edges, which lie half-way between channel centres) and divided by the channel
width, so the model is an F_lambda and ``sum(model_line * dlam) == flux`` for
a line inside the spectrum.

Fixed ratios (:data:`ismcgm.instrument.TIED_RATIOS` and the [O II] doublet
weights of :data:`ismcgm.instrument.LINES`) tie lines into groups with one
free amplitude each: [O II] 3726/3729 = 1, [O III] 4959 = 5007/3,
[N II] 6548 = 6583/3.  Amplitudes are not bounded, so a line flux may be
negative in a noisy realisation; this keeps Monte Carlo medians and upper
limits unbiased.

The continuum is a Legendre polynomial of order ``cont_order`` (default 1) in
every fitting window.  Windows extend ``+-window_kms`` (default 3000 km/s)
around each transition at the systemic redshift; overlapping windows merge,
and only channels inside windows are fitted.  Channels whose flux is not
finite or whose error is not finite and positive are left out.

With ``n_components=2`` a second kinematic component (own ``v2``,
``sigma2`` and line amplitudes, same ratios) is added; the reported line
flux is the sum of both.  Components are reported in order of increasing
``sigma`` (component 1 is the narrower one).

Fluxes are in the units of ``flux`` times Angstrom, i.e. erg/s/cm^2 for an
F_lambda in erg/s/cm^2/A.  Internally the spectrum is divided by the median
error, so values of 1e-20 cause no numerical trouble.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial import legendre

from .. import instrument
from .fast import _contexts, _fit_fast
from .lmfit_ref import _fit_lmfit
from .model import (
    DEFAULT_SIGMA_BOUNDS,
    DEFAULT_SIGMA_SCAN_KMS,
    DEFAULT_V_BOUNDS,
    DEFAULT_V_SCAN_KMS,
    DEFAULT_WINDOW_KMS,
    _cont_without_data,
    _group_coverage,
    _prepare,
    _Problem,
    _profiles,
    channel_edges_um,
)
from .scan import _starting_points


@dataclass(frozen=True)
class FitResult:
    """Result of :func:`fit_spectra` for ``n_real`` realisations of one spectrum.

    Attributes
    ----------
    lines : tuple of str
        Reported lines (instrument line names), in wavelength order.
    flux : dict of str to ndarray
        Line flux per realisation, shape (n_real,), in ``flux`` units x A
        (erg/s/cm^2 for F_lambda in erg/s/cm^2/A); summed over the kinematic
        components.  NaN for a line without valid data near it.
    component_flux : dict of str to ndarray
        Line flux per realisation and component, shape (n_real, n_components).
    velocity_kms, sigma_kms : ndarray, shape (n_real,)
        Velocity offset from the systemic redshift and intrinsic dispersion
        of component 1 (the narrower one) [km/s].
    velocity2_kms, sigma2_kms : ndarray, shape (n_real,) or None
        The same for component 2 (``None`` for one component).
    chi2 : ndarray, shape (n_real,)
        Sum of squared normalised residuals over the fitted channels.
    dof : ndarray, shape (n_real,)
        Number of fitted channels minus the number of free parameters.
    success : ndarray of bool, shape (n_real,)
        Whether the optimiser reports convergence.
    method : str
        ``"fast"`` or ``"lmfit"``.
    z : float
        Systemic redshift.
    grating : str
        Grating name.
    n_components, cont_order : int
        Model settings used.
    windows_um : tuple of (float, float)
        Fitting windows [micron].
    """

    lines: tuple
    flux: dict
    component_flux: dict
    velocity_kms: np.ndarray
    sigma_kms: np.ndarray
    velocity2_kms: np.ndarray | None
    sigma2_kms: np.ndarray | None
    chi2: np.ndarray
    dof: np.ndarray
    success: np.ndarray
    method: str
    z: float
    grating: str
    n_components: int
    cont_order: int
    windows_um: tuple
    _problem: _Problem = field(repr=False)
    _theta: np.ndarray = field(repr=False)
    _group_amp: np.ndarray = field(repr=False)  # (n_real, n_components * n_groups), physical
    _cont_coef: np.ndarray = field(repr=False)  # (n_real, n_cont), physical

    @property
    def n_real(self):
        """Number of realisations."""
        return self.chi2.size

    def model(self, wave_um, realisation=0, part="total"):
        """Best-fit model of one realisation on the channels ``wave_um``.

        The Gaussians are evaluated on the whole grid here (in the fit each
        is restricted to its fitting window; the difference is a far tail).

        Parameters
        ----------
        wave_um : array_like, shape (n,)
            Channel centres [micron]; the line Gaussians are integrated over
            these channels, so a finer grid gives a smoother curve.
        realisation : int
            Which realisation.
        part : {"total", "lines", "continuum"}
            The full model, only the emission lines, or only the continuum.
            The continuum (and hence the total) is NaN outside the fitting
            windows.

        Returns
        -------
        numpy.ndarray, shape (n,)
            Flux density in the units of the fitted ``flux``.
        """
        if part not in ("total", "lines", "continuum"):
            raise ValueError(f"part must be 'total', 'lines' or 'continuum', not {part!r}")
        pb = self._problem
        wave_um = np.asarray(wave_um, dtype=float)
        edges_A = channel_edges_um(wave_um) * 1e4
        wave_A = wave_um * 1e4
        theta = self._theta[realisation]
        lines = np.zeros(wave_um.size)
        ng = pb.n_groups
        for c in range(pb.n_components):
            prof = _profiles(edges_A, theta[None, 2 * c : 2 * c + 2], pb.z, pb.trans)[0]
            amp_t = pb.trans.to_group @ self._group_amp[realisation, c * ng : (c + 1) * ng]
            lines += prof @ amp_t
        if part == "lines":
            return lines
        cont = np.full(wave_um.size, np.nan)
        n_seg = pb.cont_order + 1
        for s, seg in enumerate(pb.segments):
            inside = (wave_A >= seg.lo_A) & (wave_A <= seg.hi_A)
            x = (wave_A[inside] - seg.centre_A) / seg.halfwidth_A
            coef = self._cont_coef[realisation, s * n_seg : (s + 1) * n_seg]
            cont[inside] = legendre.legval(x, coef)
        return cont if part == "continuum" else cont + lines


def fit_spectra(
    wave_um,
    flux,
    err,
    z,
    grating,
    *,
    method="fast",
    cont_order=1,
    n_components=1,
    lines=None,
    window_kms=DEFAULT_WINDOW_KMS,
    v_bounds=DEFAULT_V_BOUNDS,
    sigma_bounds=DEFAULT_SIGMA_BOUNDS,
    v_scan_kms=DEFAULT_V_SCAN_KMS,
    sigma_scan_kms=DEFAULT_SIGMA_SCAN_KMS,
):
    """Fit the tied-kinematics line model to one spectrum or its realisations.

    Parameters
    ----------
    wave_um : array_like, shape (n_wave,)
        Channel centres [micron], strictly increasing.
    flux : array_like, shape (n_wave,) or (n_real, n_wave)
        Flux density F_lambda (e.g. erg/s/cm^2/A); one row per Monte Carlo
        realisation.  Non-finite values mark channels to leave out.
    err : array_like, shape (n_wave,)
        1-sigma error of ``flux``; channels with a non-finite or non-positive
        error are left out.
    z : float
        Systemic redshift.
    grating : str or ismcgm.instrument.Grating
        Grating of the spectrum (line-spread function, line list).
    method : {"fast", "lmfit"}
        Variable-projection fitter or the lmfit reference (see module docs).
    cont_order : int
        Order of the Legendre continuum in every window (0 = constant).
    n_components : {1, 2}
        Number of kinematic components.
    lines : sequence of str, optional
        Lines to fit; default :func:`ismcgm.instrument.lines_in_grating`.
    window_kms : float
        Half-width of the fitting window around each transition [km/s].
    v_bounds, sigma_bounds : (float, float)
        Allowed ranges of the velocity offsets and dispersions [km/s].
    v_scan_kms : float
        Half-range of the velocity grid of the starting-point scan [km/s].
    sigma_scan_kms : (float, float)
        Range of the dispersion grid of the starting-point scan [km/s].

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        For inconsistent shapes, unknown grating or method, no line in the
        grating, or a spectrum without any valid channel.
    """
    g = grating if isinstance(grating, instrument.Grating) else instrument.get_grating(grating)
    if method not in ("fast", "lmfit"):
        raise ValueError(f"method must be 'fast' or 'lmfit', not {method!r}")
    if n_components not in (1, 2):
        raise ValueError(f"n_components must be 1 or 2, not {n_components!r}")
    if int(cont_order) != cont_order or cont_order < 0:
        raise ValueError(f"cont_order must be a non-negative integer, not {cont_order!r}")
    cont_order = int(cont_order)
    if lines is None:
        lines = instrument.lines_in_grating(g, z)
    else:
        unknown = [name for name in lines if name not in instrument.LINES]
        if unknown:
            raise ValueError(f"unknown line name(s) {unknown}: use {', '.join(instrument.LINES)}")
        lines = [name for name in instrument.LINES if name in set(lines)]
    if not lines:
        raise ValueError(f"no emission line of the model falls in {g.name} at z={z:.4f}")
    problem, data = _prepare(wave_um, flux, err, z, g, lines, n_components, cont_order, window_kms)
    contexts = _contexts(problem, data)
    theta0 = np.empty((data.y.shape[0], 2 * n_components))
    for rows, ctx in contexts:
        theta0[rows] = _starting_points(problem, ctx, v_bounds, sigma_bounds, v_scan_kms, sigma_scan_kms)
    if method == "fast":
        theta, beta, chi2, success = _fit_fast(problem, contexts, theta0, v_bounds, sigma_bounds)
    else:
        theta, beta, chi2, success = _fit_lmfit(problem, data, theta0, v_bounds, sigma_bounds)
    return _make_result(problem, data, theta, beta, chi2, success, method)


def _make_result(problem, data, theta, beta, chi2, success, method):
    n = theta.shape[0]
    ng, nc = problem.n_groups, problem.n_components
    amp = beta[:, : ng * nc].reshape(n, nc, ng) * data.scale
    cont = beta[:, ng * nc :] * data.scale
    theta = theta.copy()
    if nc == 2:  # report the narrower component first
        swap = theta[:, 3] < theta[:, 1]
        theta[swap] = theta[swap][:, [2, 3, 0, 1]]
        amp[swap] = amp[swap][:, ::-1]
    # everything per realisation (its own channel mask), never over the batch
    mask = data.w > 0
    if np.all(mask == mask[0]):  # the usual case: one mask for all
        patterns, inverse = mask[:1], np.zeros(n, dtype=np.intp)
    else:
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        inverse = inverse.ravel()
    covered = np.array([_group_coverage(problem, p) for p in patterns])[inverse]  # (n, ng)
    n_cont = np.array([problem.n_cont - np.count_nonzero(_cont_without_data(problem, p)) for p in patterns])
    comp_flux, flux = {}, {}
    for line in problem.lines:
        gidx, ratio = problem.members[line]
        f = np.where(covered[:, gidx, None], amp[:, :, gidx] * ratio, np.nan)
        comp_flux[line] = f
        flux[line] = f[:, 0] + f[:, 1] if nc == 2 else f[:, 0].copy()
    dof = np.count_nonzero(mask, axis=1) - (2 * nc + ng * nc + n_cont[inverse])
    windows = tuple((seg.lo_A * 1e-4, seg.hi_A * 1e-4) for seg in problem.segments)
    return FitResult(
        lines=tuple(problem.lines),
        flux=flux,
        component_flux=comp_flux,
        velocity_kms=theta[:, 0],
        sigma_kms=theta[:, 1],
        velocity2_kms=theta[:, 2] if nc == 2 else None,
        sigma2_kms=theta[:, 3] if nc == 2 else None,
        chi2=chi2,
        dof=dof,
        success=success,
        method=method,
        z=float(problem.z),
        grating=problem.grating.name,
        n_components=nc,
        cont_order=problem.cont_order,
        windows_um=windows,
        _problem=problem,
        _theta=theta,
        _group_amp=amp.reshape(n, nc * ng),
        _cont_coef=cont,
    )
