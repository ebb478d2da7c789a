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

import copy
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.polynomial import legendre
from scipy.special import ndtr

from . import instrument

__all__ = [
    "FitResult",
    "fit_spectra",
    "line_model",
    "channel_edges_um",
    "three_channel_flux",
    "DEFAULT_WINDOW_KMS",
    "DEFAULT_V_BOUNDS",
    "DEFAULT_SIGMA_BOUNDS",
    "DEFAULT_V_SCAN_KMS",
    "DEFAULT_SIGMA_SCAN_KMS",
]

#: Half-width [km/s] of the fitting window around every transition.
DEFAULT_WINDOW_KMS = 3000.0

#: Allowed range of the velocity offsets [km/s].
DEFAULT_V_BOUNDS = (-1000.0, 1000.0)

#: Allowed range of the intrinsic dispersions [km/s].
DEFAULT_SIGMA_BOUNDS = (1.0, 1000.0)

#: Half-range [km/s] of the velocity grid of the starting-point scan.
DEFAULT_V_SCAN_KMS = 500.0

#: Range [km/s] of the (logarithmic) dispersion grid of the starting-point scan.
DEFAULT_SIGMA_SCAN_KMS = (10.0, 500.0)

_C = instrument.C_KMS
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
#: Relative ridge added to the (Jacobi-scaled) normal equations; it only
#: matters for columns without data (a line in a gap), which then get 0.
_RIDGE = 1e-10
#: Convergence tolerances of the lmfit reference (MINPACK ``leastsq``); tighter
#: than lmfit's defaults (1.5e-8) so that the reference is converged to well
#: below 1% of the flux errors also for faint lines.
_LMFIT_TOL = {"ftol": 1e-10, "xtol": 1e-10}
#: Realisations fitted together by the fast fitter (bounds the memory use).
_CHUNK = 256


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def channel_edges_um(wave_um):
    """Channel edges [micron] for channel centres ``wave_um``.

    Edges lie half-way between neighbouring centres; the outer edges are half
    a channel beyond the first and last centre.

    Parameters
    ----------
    wave_um : array_like, shape (n_wave,)
        Increasing channel centres.

    Returns
    -------
    numpy.ndarray, shape (n_wave + 1,)
    """
    w = np.asarray(wave_um, dtype=float)
    if w.ndim != 1 or w.size < 2:
        raise ValueError("wave_um must be a 1-D array of at least two channels")
    if np.any(np.diff(w) <= 0):
        raise ValueError("wave_um must be strictly increasing")
    mid = 0.5 * (w[1:] + w[:-1])
    return np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])


def _line_groups(lines):
    """Group ``lines`` by the fixed flux ratios.

    Returns
    -------
    groups : list of str
        Name of the free amplitude of each group (the reference line).
    members : dict
        ``line -> (group index, flux of the line per unit group amplitude)``.
    """
    groups, members = [], {}
    for line in lines:
        ref, ratio = instrument.TIED_RATIOS.get(line, (line, 1.0))
        if ref not in groups:
            groups.append(ref)
        members[line] = (groups.index(ref), ratio)
    return groups, members


@dataclass(frozen=True)
class _Transitions:
    """The transitions of the model, flattened.

    Every transition belongs to one line group (one free amplitude) and
    carries the fraction ``weight`` of the group amplitude.
    """

    rest_A: np.ndarray  # (n_trans,)
    lsf_kms: np.ndarray  # (n_trans,) instrumental sigma at the systemic wavelength
    to_group: np.ndarray  # (n_trans, n_groups): flux per unit group amplitude

    @property
    def group(self):
        """Group index of every transition, shape (n_trans,)."""
        return np.argmax(self.to_group != 0, axis=1)

    @property
    def weight(self):
        """Flux of every transition per unit group amplitude, shape (n_trans,)."""
        return self.to_group[np.arange(self.rest_A.size), self.group]


def _transitions(lines, z, grating):
    groups, members = _line_groups(lines)
    rest, rows = [], []
    for line in lines:
        gidx, ratio = members[line]
        for name, frac in instrument.LINES[line]:
            rest.append(instrument.TRANSITIONS[name])
            row = np.zeros(len(groups))
            row[gidx] = ratio * frac
            rows.append(row)
    rest = np.asarray(rest)
    lsf = np.asarray(grating.lsf_sigma_kms(rest * (1.0 + z) * 1e-4), dtype=float)
    return groups, members, _Transitions(rest, lsf, np.asarray(rows))


def _centres_widths(theta_c, z, rest_A, lsf_kms):
    """Observed centres [A], dispersions [km/s] and dispersions [A] of transitions.

    ``theta_c`` (n, 2) holds ``(v, sigma)``; the results have shape (n, n_trans).
    """
    v = theta_c[:, 0:1]
    sig = theta_c[:, 1:2]
    mu = rest_A * (1.0 + z) * (1.0 + v / _C)
    sobs = np.sqrt(sig * sig + lsf_kms * lsf_kms)
    return mu, sobs, mu * sobs / _C


def _edge_cdf(edges_A, theta, z, rest_A, lsf_kms, order=0):
    """Normal CDF of every transition at the channel edges, and its derivatives.

    Parameters
    ----------
    edges_A : ndarray, shape (m + 1,) or (n, m + 1)
        Channel edges [A] of a contiguous block of channels (the same for
        every batch element, or one block per element).
    theta : ndarray, shape (n, 2)
        ``(v, sigma)`` [km/s] per batch element.
    z : float
        Systemic redshift.
    rest_A, lsf_kms : ndarray, shape (n_trans,)
        Rest wavelengths [A] and instrumental sigma [km/s] of the transitions.
    order : {0, 1, 2}
        Highest order of the derivatives with respect to ``v`` and
        ``q = sigma**2`` to return (``q`` keeps them regular at ``sigma = 0``).

    Returns
    -------
    list of ndarray, each of shape (n, m + 1, n_trans)
        ``[cdf]``, plus ``d/dv, d/dq`` for ``order >= 1``, plus
        ``d2/dv2, d2/dvdq, d2/dq2`` for ``order == 2``.
    """
    mu, sobs, sw = _centres_widths(theta, z, rest_A, lsf_kms)
    edges = edges_A if edges_A.ndim == 2 else edges_A[None, :]
    x = edges[:, :, None] - mu[:, None, :]
    x /= sw[:, None, :]
    m = rest_A * (1.0 + z) / _C
    return _cdf_derivatives(x, mu[:, None, :], sobs[:, None, :], sw[:, None, :], m, order)


def _cdf_derivatives(x, mu, sobs, sw, m, order):
    """``[F(x)]`` (plus derivatives) for ``x = (e - mu) / sw``; see :func:`_edge_cdf`.

    ``mu``, ``sobs``, ``sw`` (centre [A], observed sigma [km/s] and sigma [A])
    and ``m = d mu / dv`` broadcast against ``x``.  Only elementwise
    operations, so every value depends on its own inputs alone.
    """
    out = [ndtr(x)]
    if order == 0:
        return out
    # x = (e - mu) / s with mu = mu0 (1 + v/c), s = mu S / c, S = sqrt(q + lsf^2):
    # x_v = -(m + x s_v) / s and x_q = -x s_q / s with m = d mu / dv, and
    # d F(x) = phi(x) dx, d2 F = phi(x) (d2x - x dx dx)
    b0 = m / sw  # m / s
    b1 = m * sobs / (_C * sw)  # s_v / s
    aq = mu / (2.0 * _C * sobs * sw)  # s_q / s
    xx = x * x
    phi = np.exp(-0.5 * xx)
    phi *= _INV_SQRT_2PI
    x_v = x * b1
    x_v += b0
    x_v *= -1.0
    f_v = phi * x_v
    f_q = phi * x
    f_q *= -aq
    out += [f_v, f_q]
    if order == 1:
        return out
    c_vq = m / (2.0 * _C * sobs * sw)  # s_vq / s
    c_qq = -mu / (4.0 * _C * sobs**3 * sw)  # s_qq / s
    f_vv = x * x_v
    f_vv += 2.0 * b1
    f_vv *= -f_v
    f_vq = (xx - 1.0) * x_v
    f_vq *= aq
    f_vq += x * (aq * b1 - c_vq)
    f_vq *= phi
    f_qq = (2.0 - xx) * (aq * aq) - c_qq
    f_qq *= x
    f_qq *= phi
    out += [f_vv, f_vq, f_qq]
    return out


def _profiles(edges_A, theta, z, trans):
    """Channel-integrated unit-flux Gaussians, shape (n, m, n_trans) [1/A].

    ``edges_A`` (m + 1,) are contiguous channel edges, ``theta`` (n, 2) holds
    ``(v, sigma)`` [km/s].  Each value is the mean flux density over the
    channel of a line of unit flux.
    """
    cdf = _edge_cdf(edges_A, theta, z, trans.rest_A, trans.lsf_kms)[0]
    return np.diff(cdf, axis=1) / np.diff(edges_A)[None, :, None]


def line_model(wave_um, z, grating, fluxes, velocity_kms=0.0, sigma_kms=50.0):
    """Emission-line model (no continuum) on the channels ``wave_um``.

    This is the line part of the model that :func:`fit_spectra` fits, handy to
    build synthetic spectra and to plot fits.

    Parameters
    ----------
    wave_um : array_like, shape (n_wave,)
        Channel centres [micron].
    z : float
        Systemic redshift.
    grating : str or ismcgm.instrument.Grating
        Grating, for the line-spread function.
    fluxes : dict
        ``line name -> flux`` (e.g. erg/s/cm^2).  The tied ratios are *not*
        imposed here: give every line you want in the model.
    velocity_kms, sigma_kms : float
        Velocity offset and intrinsic dispersion [km/s].

    Returns
    -------
    numpy.ndarray, shape (n_wave,)
        Flux density [flux units per A].

    Examples
    --------
    >>> import numpy as np
    >>> from ismcgm import fit, instrument
    >>> wave = instrument.get_grating("g395m").wavelength_grid()
    >>> model = fit.line_model(wave, 5.0, "g395m", {"HA": 1e-17})
    >>> dlam = np.diff(fit.channel_edges_um(wave)) * 1e4
    >>> bool(np.isclose(np.sum(model * dlam), 1e-17))
    True
    """
    g = grating if isinstance(grating, instrument.Grating) else instrument.get_grating(grating)
    lines = list(fluxes)
    unknown = [name for name in lines if name not in instrument.LINES]
    if unknown:
        raise ValueError(f"unknown line name(s) {unknown}: use {', '.join(instrument.LINES)}")
    rest, weight = [], []
    for name in lines:
        for tname, frac in instrument.LINES[name]:
            rest.append(instrument.TRANSITIONS[tname])
            weight.append(frac * fluxes[name])
    rest = np.asarray(rest)
    trans = _Transitions(rest, g.lsf_sigma_kms(rest * (1.0 + z) * 1e-4), np.eye(rest.size))
    edges_A = channel_edges_um(wave_um) * 1e4
    theta = np.array([[float(velocity_kms), float(sigma_kms)]])
    prof = _profiles(edges_A, theta, z, trans)[0]
    return prof @ np.asarray(weight, dtype=float)


# ---------------------------------------------------------------------------
# the fitting problem: windows, transitions, design matrices
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """A merged fitting window: a contiguous block of fitted channels."""

    start: int  # first fitted channel (index into the fitted channels)
    stop: int
    edges_A: np.ndarray  # (stop - start + 1,)
    trans: np.ndarray  # indices of the transitions inside the window
    lo_A: float
    hi_A: float

    @property
    def centre_A(self):
        return 0.5 * (self.lo_A + self.hi_A)

    @property
    def halfwidth_A(self):
        return 0.5 * (self.hi_A - self.lo_A)


@dataclass(frozen=True)
class _Problem:
    """Everything of the linearised model that does not depend on the data.

    The linear parameters are ordered as the line-group amplitudes of
    component 1, those of component 2, then the continuum coefficients of
    every window.  A transition's Gaussian is evaluated in its own window.
    """

    z: float
    grating: instrument.Grating
    lines: list
    groups: list
    members: dict
    trans: _Transitions
    n_components: int
    cont_order: int
    fit_chan: np.ndarray  # indices of the fitted channels in the input grid
    segments: tuple
    cont_basis: np.ndarray  # (n_fit, n_cont)

    @property
    def n_groups(self):
        return len(self.groups)

    @property
    def n_line_cols(self):
        return self.n_groups * self.n_components

    @property
    def n_cont(self):
        return self.cont_basis.shape[1]

    def line_columns(self, theta):
        """Design-matrix columns of the line amplitudes on all fitted channels.

        Parameters
        ----------
        theta : ndarray, shape (n, 2 * n_components)
            ``(v1, sigma1, v2, sigma2)`` [km/s].

        Returns
        -------
        ndarray, shape (n, n_fit, n_components * n_groups)
            Flux density per unit group amplitude [1/A].
        """
        n, k = theta.shape[0], self.n_groups
        cols = np.zeros((n, self.fit_chan.size, self.n_line_cols))
        for c in range(self.n_components):
            for seg in self.segments:
                t = seg.trans
                cdf = _edge_cdf(
                    seg.edges_A, theta[:, 2 * c : 2 * c + 2], self.z,
                    self.trans.rest_A[t], self.trans.lsf_kms[t],
                )[0]
                prof = np.diff(cdf, axis=1) / np.diff(seg.edges_A)[:, None]
                cols[:, seg.start : seg.stop, c * k : (c + 1) * k] = prof @ self.trans.to_group[t]
        return cols


def _windows(trans_obs_A, window_kms, lo_A, hi_A):
    """Merged fitting windows ``[(lo, hi), ...]`` [A] around the transitions."""
    half = trans_obs_A * window_kms / _C
    order = np.argsort(trans_obs_A)
    wins = []
    for lo, hi in zip((trans_obs_A - half)[order], (trans_obs_A + half)[order]):
        lo, hi = max(lo, lo_A), min(hi, hi_A)
        if hi <= lo:
            continue
        if wins and lo <= wins[-1][1]:
            wins[-1][1] = max(wins[-1][1], hi)
        else:
            wins.append([lo, hi])
    return [tuple(w) for w in wins]


def _build_problem(wave_um, valid, z, grating, lines, n_components, cont_order, window_kms):
    """Fitting windows, transitions and continuum basis of a spectrum.

    Windows with fewer than ``cont_order + 2`` channels ``valid`` (a valid
    error) are dropped.
    """
    groups, members, trans = _transitions(lines, z, grating)
    edges_A = channel_edges_um(wave_um) * 1e4
    wave_A = np.asarray(wave_um, dtype=float) * 1e4
    trans_obs = trans.rest_A * (1.0 + z)
    segments, fit_chan, blocks = [], [], []
    n_done = 0
    for lo, hi in _windows(trans_obs, window_kms, edges_A[0], edges_A[-1]):
        chan = np.flatnonzero((wave_A >= lo) & (wave_A <= hi))
        if np.count_nonzero(valid[chan]) < cont_order + 2:
            continue
        t = np.flatnonzero((trans_obs >= lo) & (trans_obs <= hi))
        seg = _Segment(n_done, n_done + chan.size, edges_A[chan[0] : chan[-1] + 2], t, lo, hi)
        segments.append(seg)
        fit_chan.append(chan)
        blocks.append(legendre.legvander((wave_A[chan] - seg.centre_A) / seg.halfwidth_A, cont_order))
        n_done += chan.size
    if not segments:
        raise ValueError(f"no valid channels around the lines {lines} at z={z:.4f} in {grating.name}")
    n_per = cont_order + 1
    basis = np.zeros((n_done, n_per * len(segments)))
    for i, (seg, block) in enumerate(zip(segments, blocks)):
        basis[seg.start : seg.stop, i * n_per : (i + 1) * n_per] = block
    return _Problem(
        z=z,
        grating=grating,
        lines=list(lines),
        groups=groups,
        members=members,
        trans=trans,
        n_components=n_components,
        cont_order=cont_order,
        fit_chan=np.concatenate(fit_chan),
        segments=tuple(segments),
        cont_basis=basis,
    )


def _group_coverage(problem, valid_fit, min_channels=3):
    """True for every line group with data near at least one of its transitions.

    A group counts as covered when at least ``min_channels`` valid channels
    lie within ``+-max(3 sigma_LSF, 300 km/s)`` of one of its transitions.
    """
    covered = np.zeros(problem.n_groups, dtype=bool)
    for seg in problem.segments:
        centres = 0.5 * (seg.edges_A[1:] + seg.edges_A[:-1])
        ok = valid_fit[seg.start : seg.stop]
        for t in seg.trans:
            mu = problem.trans.rest_A[t] * (1.0 + problem.z)
            half = mu * max(3.0 * problem.trans.lsf_kms[t], 300.0) / _C
            if np.count_nonzero(ok & (np.abs(centres - mu) <= half)) >= min_channels:
                covered |= problem.trans.to_group[t] != 0
    return covered


def _cont_without_data(problem, valid_fit):
    """True for every continuum coefficient of a window without valid channels."""
    n_per = problem.cont_order + 1
    empty = np.array([not np.any(valid_fit[seg.start : seg.stop]) for seg in problem.segments])
    return np.repeat(empty, n_per)


# ---------------------------------------------------------------------------
# the data side
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    y: np.ndarray  # (n_real, n_fit) flux / scale, 0 where invalid
    w: np.ndarray  # (n_real, n_fit) scale / err, 0 where invalid
    scale: float  # physical flux density per internal unit


def _prepare(wave_um, flux, err, z, grating, lines, n_components, cont_order, window_kms):
    """Check the inputs and set up the problem and the scaled data.

    Nothing here mixes the realisations: the windows and the internal flux
    scale depend on the error spectrum only, and a window in which one
    realisation has fewer than ``cont_order + 2`` valid channels is left out
    (weight 0) for that realisation alone.  So every realisation gets the same
    data whichever other realisations are fitted with it.
    """
    wave_um = np.asarray(wave_um, dtype=float)
    flux = np.asarray(flux, dtype=float)
    err = np.asarray(err, dtype=float)
    if flux.ndim == 1:
        flux = flux[None, :]
    if flux.ndim != 2 or flux.shape[1] != wave_um.size:
        raise ValueError(
            f"flux must have shape (n_wave,) or (n_real, n_wave) with n_wave={wave_um.size}, "
            f"got {flux.shape}"
        )
    if err.shape != wave_um.shape:
        raise ValueError(f"err must have shape {wave_um.shape}, got {err.shape}")
    good_err = np.isfinite(err) & (err > 0)
    finite = np.isfinite(flux) & good_err
    if not np.any(finite):
        raise ValueError("spectrum has no valid channel (flux all NaN or err <= 0 everywhere)")
    empty = np.flatnonzero(~finite.any(axis=1))
    if empty.size:
        raise ValueError(f"realisation(s) {empty.tolist()} have no valid channel (all NaN)")
    problem = _build_problem(wave_um, good_err, z, grating, lines, n_components, cont_order, window_kms)
    ok = finite[:, problem.fit_chan]
    for seg in problem.segments:
        few = np.count_nonzero(ok[:, seg.start : seg.stop], axis=1) < cont_order + 2
        ok[few, seg.start : seg.stop] = False
    empty = np.flatnonzero(~ok.any(axis=1))
    if empty.size:
        raise ValueError(
            f"realisation(s) {empty.tolist()} have no valid channels around the lines {lines} "
            f"at z={z:.4f} in {grating.name}"
        )
    scale = float(np.median(err[problem.fit_chan][good_err[problem.fit_chan]]))
    # C order: a row's memory layout (and so the BLAS path of products with
    # it) must not depend on the number of rows (``flux[:, fit_chan]`` is
    # Fortran-ordered)
    y = np.ascontiguousarray(np.where(ok, flux[:, problem.fit_chan] / scale, 0.0))
    w = np.ascontiguousarray(np.where(ok, scale / np.where(good_err, err, 1.0)[problem.fit_chan], 0.0))
    return problem, _Data(y=y, w=w, scale=scale)


def _inv_normal(gram):
    """Inverse of batched normal matrices, Jacobi-scaled, with a tiny ridge.

    The ridge only matters for a column without data (a line in a gap of
    the spectrum), whose amplitude then comes out as 0.
    """
    d = np.sqrt(np.abs(np.einsum("...ii->...i", gram)))
    d[d == 0] = 1.0
    dd = d[..., :, None] * d[..., None, :]
    return np.linalg.inv(gram / dd + _RIDGE * np.eye(gram.shape[-1])) / dd


def _dense_linear(problem, data, theta):
    """Best linear parameters and chi^2 at ``theta`` on all fitted channels.

    Straightforward weighted least squares with the full design matrix; the
    reference for :class:`_Projected` and the start of the lmfit fitter.

    Returns
    -------
    beta : ndarray, shape (n, n_line_cols + n_cont)
    chi2 : ndarray, shape (n,)
    """
    n = theta.shape[0]
    cont = np.broadcast_to(problem.cont_basis, (n,) + problem.cont_basis.shape)
    aw = np.concatenate([problem.line_columns(theta), cont], axis=2) * data.w[:, :, None]
    yw = data.y * data.w
    at = np.swapaxes(aw, 1, 2)
    beta = (_inv_normal(at @ aw) @ (at @ yw[:, :, None]))[:, :, 0]
    r = yw - (aw @ beta[:, :, None])[:, :, 0]
    return beta, (r[:, None, :] @ r[:, :, None])[:, 0, 0]


# ---------------------------------------------------------------------------
# the fast fitter: variable projection on line stencils
# ---------------------------------------------------------------------------
#
# Batch invariance.  The fit of one realisation must not depend, not even in
# the last bit, on which other realisations are fitted in the same call (the
# workflow fits them in chunks of any size).  So the realisation axis is never
# a dimension of a BLAS matrix (whose blocking and kernels depend on the
# matrix sizes), and every sum of a realisation's numbers runs over its own
# numbers only, in an order that does not depend on the batch:
#
# * every sum over the fitted channels is a stacked matrix product over the
#   *dense* fitted-channel axis (one BLAS call of a shape fixed by the problem
#   per realisation);
# * the Gaussians are evaluated on ragged per-transition stencils (the
#   channels within ``_STENCIL_NSIG`` observed sigmas of the realisation's own
#   line centre), laid out one after the other in a flat array ordered by
#   transition, realisation and channel; sums over stencils and additions
#   into the dense columns are sequential accumulations in that order
#   (:func:`numpy.bincount`), so a realisation's sums see its own values only,
#   always in the same order;
# * the grid scan applies its (data-independent) columns to the data in
#   zero-padded blocks of a fixed number (``_ROW_BLOCK``) of realisations,
#   over channel ranges that depend on the grid alone (:func:`_scan`);
# * the damped Newton iteration keeps every realisation on its own path.
#
# ``tests/test_fit.py::test_batch_invariance`` checks this.

#: Gaussians are evaluated within this many observed sigmas of their centre
#: by the fast fitter (the neglected tails hold 2e-9 of the flux).
_STENCIL_NSIG = 6.0

#: Realisations per matrix product of the grid scan (see :func:`_scan`).
_ROW_BLOCK = 16


@dataclass(frozen=True)
class _Stencils:
    """The fitted transitions (those inside a window) for stencil evaluation."""

    rest_A: np.ndarray  # (T,)
    lsf_kms: np.ndarray  # (T,)
    weight: np.ndarray  # (T,) flux per unit group amplitude
    group: np.ndarray  # (T,) line group
    start: np.ndarray  # (T,) first fitted channel of the window
    n_chan: np.ndarray  # (T,) channels in the window
    edge_off: np.ndarray  # (T,) offset of the window's edges in ``edges``
    edges: np.ndarray  # the channel edges of all windows, one after the other
    windows: tuple  # ((segment, slice of the transitions), ...)


def _stencil_setup(problem):
    idx, start, n_chan, edge_off, edges, windows = [], [], [], [], [], []
    off = 0
    for seg in problem.segments:
        windows.append((seg, slice(len(idx), len(idx) + seg.trans.size)))
        for t in seg.trans:
            idx.append(t)
            start.append(seg.start)
            n_chan.append(seg.stop - seg.start)
            edge_off.append(off)
        edges.append(seg.edges_A)
        off += seg.edges_A.size
    idx = np.asarray(idx, dtype=np.intp)
    tr = problem.trans
    return _Stencils(
        rest_A=tr.rest_A[idx],
        lsf_kms=tr.lsf_kms[idx],
        weight=tr.weight[idx],
        group=tr.group[idx],
        start=np.asarray(start, dtype=np.intp),
        n_chan=np.asarray(n_chan, dtype=np.intp),
        edge_off=np.asarray(edge_off, dtype=np.intp),
        edges=np.concatenate(edges),
        windows=tuple(windows),
    )


class _Flat:
    """Ragged stencils of one kinematic component, flattened.

    Stencil ``i = t * n + row`` covers the fitted channels within
    ``_STENCIL_NSIG`` observed sigmas of the centre of transition ``t`` of
    realisation ``row`` (clipped to the transition's window).  Its ``L``
    channels are described by ``L + 1`` consecutive points of the flat
    arrays, one per channel edge; the point of a channel's lower edge holds
    that channel's values, the last point of a stencil (the upper edge of its
    last channel) holds ``chan = n_fit`` and a zero ``scale``.

    Per stencil (shape (T * n,)): ``row``, ``tr`` (transition), ``mu``,
    ``sobs``, ``sw`` (centre [A], observed sigma [km/s] and [A]), ``chan0``
    and ``n_chan`` (its first fitted channel and number of channels) and, for
    derivatives, ``b0``, ``b1``, ``aq`` (see :func:`_cdf_derivatives`).  Per
    point (shape (E,)): ``sid`` (stencil), ``chan`` (fitted channel,
    ``n_fit`` for none), ``x`` (standardised edge), ``scale`` (weight of the
    transition x channel weight / channel width), ``prof`` (weighted
    channel-integrated profile per unit group amplitude) and, for
    derivatives, ``phi`` (normal density at ``x``), ``dv`` and ``dq``
    (``d prof / dv`` and ``d prof / d sigma**2``).
    """


def _flat_stencils(ctx, theta_c, order):
    """The :class:`_Flat` stencils of ``ctx`` at ``theta_c`` (n, 2)."""
    st = ctx.st
    n = theta_c.shape[0]
    rep = ctx.per_stencil(n)
    f = _Flat()
    mu, sobs, sw = _centres_widths(theta_c, ctx.problem.z, st.rest_A, st.lsf_kms)
    mu, sobs, sw = mu.T.ravel(), sobs.T.ravel(), sw.T.ravel()  # transition-major
    lo = mu - _STENCIL_NSIG * sw
    hi = mu + _STENCIL_NSIG * sw
    first = np.empty(mu.size, dtype=np.intp)
    last = np.empty(mu.size, dtype=np.intp)
    for seg, sl in st.windows:
        fs = slice(sl.start * n, sl.stop * n)
        first[fs] = np.searchsorted(seg.edges_A, lo[fs], side="right")
        last[fs] = np.searchsorted(seg.edges_A, hi[fs], side="left")
    first -= 1
    np.maximum(first, 0, out=first)
    np.minimum(first, rep.n_chan, out=first)
    np.minimum(last, rep.n_chan, out=last)
    count = np.maximum(last - first, 0)
    count += 1  # points (edges) per stencil
    ends = np.cumsum(count)
    f.chan0, f.n_chan = rep.start + first, count - 1  # channels of every stencil
    first -= ends - count  # now minus the first point of the stencil
    sid = np.repeat(np.arange(mu.size), count)
    local = np.arange(ends[-1])
    edge = st.edges[(rep.edge_off + first)[sid] + local]
    chan = (rep.start + first)[sid]
    chan += local
    chan[ends - 1] = ctx.n_fit
    x = edge - mu[sid]
    x *= (1.0 / sw)[sid]
    scale = rep.weight[sid] * ctx.ww_ext[chan]  # 0 at the last point of a stencil
    cdf = ndtr(x)
    prof = np.empty(edge.size)
    np.subtract(cdf[1:], cdf[:-1], out=prof[:-1])
    prof[-1] = 0.0
    prof *= scale
    f.n, f.sid, f.chan, f.x, f.scale, f.prof = n, sid, chan, x, scale, prof
    f.row, f.tr = rep.row, rep.tr
    f.mu, f.sobs, f.sw = mu, sobs, sw
    if order:
        # x = (e - mu) / s with mu = mu0 (1 + v/c), s = mu S / c, S = sqrt(q + lsf^2):
        # d cdf(x) / dv = -phi(x) (b0 + b1 x), d cdf(x) / dq = -phi(x) aq x
        # (see :func:`_cdf_derivatives`)
        # b0 = m / s, b1 = s_v / s = m / mu and aq = s_q / s = 1 / (2 S^2), m = d mu / dv
        f.b0 = rep.msl / sw
        f.b1 = rep.msl / mu
        f.aq = 0.5 / (sobs * sobs)
        phi = x * x
        phi *= -0.5
        np.exp(phi, out=phi)
        phi *= _INV_SQRT_2PI
        g = f.b1[sid] * x
        g += f.b0[sid]
        g *= phi  # -d cdf / dv
        dv = np.empty(edge.size)
        np.subtract(g[:-1], g[1:], out=dv[:-1])
        dv[-1] = 0.0
        dv *= scale
        g = x * phi
        g *= f.aq[sid]  # -d cdf / dq
        dq = np.empty(edge.size)
        np.subtract(g[:-1], g[1:], out=dq[:-1])
        dq[-1] = 0.0
        dq *= scale
        f.phi, f.dv, f.dq = phi, dv, dq
    return f


class _Projected:
    """Realisations sharing one channel mask, with the continuum projected out.

    For weights ``w`` the weighted continuum basis ``C_w = Q R`` is fixed, so
    the data are projected once, ``z = (I - Q Q^T) w y``.  For line columns
    ``L`` (weighted) the projected chi^2 minimised over amplitudes ``a`` and
    continuum coefficients is ``|z|^2 - b^T M^-1 b`` with ``b = L^T z`` and
    ``M = L^T L - (Q^T L)^T (Q^T L)``.  The Gaussians are evaluated only on
    short channel stencils around the lines and then placed in dense
    columns over the fitted channels (see the notes on batch invariance
    above).  Windows without any valid channel lose their continuum terms.

    Parameters
    ----------
    problem : _Problem
    y : ndarray, shape (n, n_fit)
        Scaled data of the realisations.
    w : ndarray, shape (n_fit,)
        Their common weights.
    """

    def __init__(self, problem, y, w):
        self.problem = problem
        self.w = w
        self.w_ext = np.append(w, 0.0)  # the extra channel collects discarded stencil values
        self.st = _stencil_setup(problem)
        width = np.concatenate([np.diff(seg.edges_A) for seg in problem.segments])
        self.ww_ext = np.append(w / width, 0.0)  # weight / channel width
        self._per_stencil = {}
        n_per = problem.cont_order + 1
        keep = [
            np.arange(i * n_per, (i + 1) * n_per)
            for i, seg in enumerate(problem.segments)
            if np.any(w[seg.start : seg.stop] > 0)
        ]
        self.cont_keep = np.concatenate(keep)
        self.q, self.r = np.linalg.qr(problem.cont_basis[:, self.cont_keep] * w[:, None])
        self.qt = np.ascontiguousarray(self.q.T)
        self.rinv = np.linalg.inv(self.r)
        yw = np.ascontiguousarray(y * w)
        self.qty = (yw[:, None, :] @ self.q)[:, 0]
        self.z = yw - (self.qty[:, None, :] @ self.qt)[:, 0]
        self.zz = (self.z[:, None, :] @ self.z[:, :, None])[:, 0, 0]

    @property
    def n_real(self):
        return self.z.shape[0]

    @property
    def n_fit(self):
        return self.w.size

    def per_stencil(self, n):
        """Per-stencil constants of the flat stencils of ``n`` realisations (cached)."""
        rep = self._per_stencil.get(n)
        if rep is None:
            st = self.st
            n_t = st.rest_A.size
            rep = _Flat()
            rep.row = np.tile(np.arange(n), n_t)
            rep.tr = np.repeat(np.arange(n_t), n)
            rep.n_chan = np.repeat(st.n_chan, n)
            rep.edge_off = np.repeat(st.edge_off, n)
            rep.start = np.repeat(st.start, n)
            rep.weight = np.repeat(st.weight, n)
            rep.msl = np.repeat(st.rest_A * (1.0 + self.problem.z) / _C, n)
            rep.row_group = rep.row * self.problem.n_groups + st.group[rep.tr]
            rep.row_cell = rep.row * (self.n_fit + 1)
            rep.row3 = np.concatenate([3 * rep.row, 3 * rep.row + 1, 3 * rep.row + 2])
            self._per_stencil[n] = rep
        return rep

    def with_problem(self, problem):
        """The same projected data for another model (e.g. one component fewer)."""
        out = copy.copy(self)
        out.problem = problem
        return out

    def _line_parts(self, theta, order=0):
        """Weighted line columns on the fitted channels, and the stencils.

        Parameters
        ----------
        theta : ndarray, shape (n, 2 * n_components)
        order : {0, 1, 2}
            Highest order of the derivatives to prepare.

        Returns
        -------
        lw : ndarray, shape (n, n_fit + 1, k)
            Weighted line columns (last channel: discarded values).
        flats : list of _Flat
            The stencils of every component.
        """
        pb, st = self.problem, self.st
        n, ng, k = theta.shape[0], pb.n_groups, pb.n_line_cols
        m1 = self.n_fit + 1
        flats, idx, val = [], [], []
        for c in range(pb.n_components):
            f = _flat_stencils(self, theta[:, 2 * c : 2 * c + 2], order)
            base = f.row * (m1 * k) + (c * ng + st.group)[f.tr]
            idx.append(base[f.sid] + f.chan * k)
            val.append(f.prof)
            flats.append(f)
        if len(idx) > 1:
            idx, val = [np.concatenate(idx)], [np.concatenate(val)]
        # sequential accumulation in transition order (see the batch-invariance notes)
        lw = np.bincount(idx[0], weights=val[0], minlength=n * m1 * k).reshape(n, m1, k)
        return lw, flats

    def evaluate(self, theta, rows=None, order=0, linear=False):
        """Projected chi^2 at ``theta`` for the realisations ``rows``.

        Parameters
        ----------
        theta : ndarray, shape (n, 2 * n_components)
            ``(v, sigma, ...)`` [km/s].
        rows : ndarray of int, shape (n,), optional
            Which realisations (default: all).
        order : {0, 1, 2}
            1: also return the gradient and the Gauss-Newton matrix; 2: also
            the exact Hessian.  All with respect to ``(v, sigma**2, ...)``.
        linear : bool
            Also return the best linear parameters (scaled units; NaN for
            the continuum of a window without data).

        Returns
        -------
        chi2 : ndarray, shape (n,)
        jtj : ndarray, shape (n, p, p)
            ``J^T J`` of the projected residual, with the exact Jacobian of
            Golub & Pereyra (1973).  Only for ``order >= 1``.
        jtr : ndarray, shape (n, p)
            ``J^T r = grad(chi2) / 2``.  Only for ``order >= 1``.
        hess : ndarray, shape (n, p, p)
            ``Hessian(chi2) / 2``.  Only for ``order == 2``.
        beta : ndarray, shape (n, n_line_cols + n_cont)
            Only with ``linear=True``.
        """
        rows = np.arange(self.n_real) if rows is None else rows
        lw_ext, flats = self._line_parts(theta, order)
        lw = lw_ext[:, : self.n_fit]
        zs = self.z[rows]
        lt = np.swapaxes(lw, 1, 2)
        qtl = np.matmul(self.qt, lw)  # (n, n_cont, k)
        b = (lt @ zs[:, :, None])[:, :, 0]
        minv = _inv_normal(lt @ lw - np.swapaxes(qtl, 1, 2) @ qtl)
        a = (minv @ b[:, :, None])[:, :, 0]
        chi2 = self.zz[rows] - (b[:, None, :] @ a[:, :, None])[:, 0, 0]
        out = [chi2]
        if order:
            out.extend(self._curvature(a, lw, lt, zs, qtl, minv, flats, order))
        if linear:
            cont = np.full((a.shape[0], self.problem.n_cont), np.nan)
            rhs = self.qty[rows] - (qtl @ a[:, :, None])[:, :, 0]
            cont[:, self.cont_keep] = np.matmul(self.rinv, rhs[:, :, None])[:, :, 0]
            out.append(np.concatenate([a, cont], axis=1))
        return out[0] if len(out) == 1 else tuple(out)

    def _curvature(self, a, lw, lt, zs, qtl, minv, flats, order):
        """Gradient, Gauss-Newton matrix and Hessian (see :meth:`evaluate`).

        With ``P = I - Q Q^T``, ``B = P L``, ``u_j = P dL_j a``,
        ``s_j = dL_j^T r`` and ``R_jl = (d2L_jl a).r`` the Golub-Pereyra
        Jacobian is ``J_j = -(I - B M^-1 B^T) u_j - B M^-1 s_j``, so

        * ``J_j.r = -u_j.r`` (half the gradient),
        * ``J_j.J_l = u_j.u_l - (B^T u_j) M^-1 (B^T u_l) + s_j M^-1 s_l``,
        * half the exact Hessian of the projected chi^2 (implicit-function
          theorem) is ``u_j.u_l - R_jl - (B^T u_j - s_j) M^-1 (B^T u_l - s_l)``.

        ``R_jl`` is summed by parts over every stencil,
        ``sum_ch (G(e_hi) - G(e_lo)) h = sum_e G(e) (h_below - h_above)``, so
        only the normal density times powers of ``x`` is needed at the edges
        (``G`` being the second derivatives of the normal CDF).
        """
        pb, st = self.problem, self.st
        n, ng, nc = a.shape[0], pb.n_groups, pb.n_components
        n_par = 2 * nc
        m1 = self.n_fit + 1
        r = zs - (lw @ a[:, :, None])[:, :, 0] + np.matmul(self.q, qtl @ a[:, :, None])[:, :, 0]
        r_ext = np.zeros((n, m1))
        r_ext[:, : self.n_fit] = r
        r_flat = r_ext.ravel()
        s = np.zeros((n, a.shape[1], n_par))
        r2 = np.zeros((n, n_par, n_par))
        idx, val = [], []
        for c, f in enumerate(flats):
            rep = self.per_stencil(n)
            amp = a[:, c * ng : (c + 1) * ng].ravel()[rep.row_group]  # per stencil
            amp_pt = amp[f.sid]
            cell = rep.row_cell[f.sid] + f.chan
            base = cell * n_par + 2 * c
            idx += [base, base + 1]
            val += [f.dv * amp_pt, f.dq * amp_pt]
            rr = r_flat[cell]
            # d^T r per line group (sequential sums in stencil order)
            grp = rep.row_group[f.sid]
            s[:, c * ng : (c + 1) * ng, 2 * c] = np.bincount(grp, f.dv * rr, n * ng).reshape(n, ng)
            s[:, c * ng : (c + 1) * ng, 2 * c + 1] = np.bincount(grp, f.dq * rr, n * ng).reshape(n, ng)
            if order == 2:
                h = rr * f.scale  # zero at the last point of every stencil
                dh = np.empty(h.size)
                dh[0] = -h[0]
                np.subtract(h[:-1], h[1:], out=dh[1:])
                ph = dh * f.phi
                n_s = amp.size
                s0 = np.bincount(f.sid, ph, n_s)
                ph *= f.x
                s1 = np.bincount(f.sid, ph, n_s)
                ph *= f.x
                s2 = np.bincount(f.sid, ph, n_s)
                ph *= f.x
                s3 = np.bincount(f.sid, ph, n_s)
                # the second derivatives of the CDF are phi(x) times cubics in x:
                # d2/dv2 = 2 b0 b1 (1 - x^2) + (2 b1^2 - b0^2) x - b1^2 x^3,
                # d2/dvdq = aq (b0 (1 - x^2) + b1 (x - x^3)), d2/dq2 = aq^2 (3 x - x^3)
                b0, b1, aq = f.b0, f.b1, f.aq
                s0 -= s2
                s2 = s1 - s3
                vv = (2.0 * b0 * b1) * s0 + (2.0 * b1 * b1 - b0 * b0) * s1 - (b1 * b1) * s3
                vq = aq * (b0 * s0 + b1 * s2)
                qq = (aq * aq) * (3.0 * s1 - s3)
                rt = np.concatenate([vv, vq, qq])
                rt *= np.tile(amp, 3)
                rt = np.bincount(rep.row3, rt, 3 * n).reshape(n, 3)  # sum over transitions, in order
                j = 2 * c
                r2[:, j, j] = rt[:, 0]
                r2[:, j, j + 1] = r2[:, j + 1, j] = rt[:, 1]
                r2[:, j + 1, j + 1] = rt[:, 2]
        if len(idx) > 1:
            idx, val = np.concatenate(idx), np.concatenate(val)
        u = np.bincount(idx, weights=val, minlength=n * m1 * n_par).reshape(n, m1, n_par)
        u = u[:, : self.n_fit]
        ut = np.swapaxes(u, 1, 2)
        qtu = np.matmul(self.qt, u)
        uu = ut @ u - np.swapaxes(qtu, 1, 2) @ qtu
        btu = lt @ u - np.swapaxes(qtl, 1, 2) @ qtu  # (n, k, p)
        jtr = -(a[:, None, :] @ s)[:, 0, :]  # -u_j.r = -a.s_j
        st_ = np.swapaxes(s, 1, 2)
        jtj = uu - np.swapaxes(btu, 1, 2) @ minv @ btu + st_ @ minv @ s
        if order == 1:
            return jtj, jtr
        diff = btu - s
        hess = uu - r2 - np.swapaxes(diff, 1, 2) @ minv @ diff
        return jtj, jtr, hess


def _contexts(problem, data):
    """Split the realisations by channel mask: ``[(rows, _Projected), ...]``."""
    mask = data.w > 0
    if np.all(mask == mask[0]):  # the usual case: one mask for all
        return [(np.arange(mask.shape[0]), _Projected(problem, data.y, data.w[0]))]
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    out = []
    for ip in range(patterns.shape[0]):
        rows = np.flatnonzero(inverse.ravel() == ip)
        # the error spectrum is shared, so equal masks mean equal weights
        out.append((rows, _Projected(problem, data.y[rows], data.w[rows[0]])))
    return out


# ---------------------------------------------------------------------------
# starting points: coarse grid scan of the projected chi^2
# ---------------------------------------------------------------------------


def _scan_grid(problem, v_scan_kms, sigma_scan_kms):
    """The (v, sigma) grid of the starting-point scan.

    Dispersions are spaced by factors of ~2.5 over ``sigma_scan_kms``; for
    each, the velocity step is half the narrowest observed line sigma, so the
    grid resolves every line.

    Returns
    -------
    sigmas : ndarray, shape (n_sigma,)
    velocities : list of ndarray
        The velocity grid of every dispersion.
    """
    s_lo, s_hi = sigma_scan_kms
    n_s = max(2, int(np.ceil(np.log(s_hi / s_lo) / np.log(2.5))) + 1)
    sigmas = np.geomspace(s_lo, s_hi, n_s)
    velocities = []
    for sig in sigmas:
        step = 0.5 * float(np.min(np.hypot(sig, problem.trans.lsf_kms)))
        velocities.append(np.linspace(-v_scan_kms, v_scan_kms, int(np.ceil(2.0 * v_scan_kms / step)) + 1))
    return sigmas, velocities


def _parabola_shift(c_minus, c_0, c_plus):
    """Offset (in grid steps, within +-1) of the vertex of a parabola through 3 points."""
    curv = c_minus - 2.0 * c_0 + c_plus
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curv > 0, 0.5 * (c_minus - c_plus) / curv, 0.0)
    return np.clip(shift, -1.0, 1.0)


def _scan(ctx, grid):
    """Starting ``(v, sigma)`` of every realisation of ``ctx`` (one component).

    The projected chi^2 is evaluated on the grid of :func:`_scan_grid` for
    all realisations at once (the line columns are shared; only ``b = L^T z``
    depends on the realisation).  ``b`` is computed for every dispersion of
    the grid and every line group over the channels where the group's
    columns are non-zero only (the stencils of its transitions), and
    ``b^T M^-1 b`` from the upper triangle of ``M^-1`` within every fitting
    window (``M`` couples only groups of the same window).  The best grid
    point is then refined by a parabola through its velocity neighbours and
    one through the best chi^2 of the neighbouring dispersions (in log
    sigma).

    Returns
    -------
    ndarray, shape (n, 2)
    """
    sigmas, velocities = grid
    theta = np.concatenate([np.column_stack([v, np.full(v.size, s)]) for s, v in zip(sigmas, velocities)])
    starts = np.cumsum([0] + [v.size for v in velocities])
    n_grid, m, k = theta.shape[0], ctx.n_fit, ctx.problem.n_line_cols
    lw, (flat,) = ctx._line_parts(theta)  # the weighted columns on all fitted channels
    lw = lw[:, :m]
    qtl = np.matmul(ctx.qt, lw)
    minv = _inv_normal(np.swapaxes(lw, 1, 2) @ lw - np.swapaxes(qtl, 1, 2) @ qtl)
    # b = L^T z on the channels of the stencils of every (dispersion, group)
    # block; every product's shape depends on the problem only, and the data
    # enter in zero-padded blocks of _ROW_BLOCK realisations
    n = ctx.n_real
    nb = -(-n // _ROW_BLOCK)
    zb = np.zeros((nb * _ROW_BLOCK, m))
    zb[:n] = ctx.z
    zb = np.ascontiguousarray(zb.reshape(nb, _ROW_BLOCK, m).transpose(0, 2, 1))  # (nb, m, block)
    group = ctx.st.group[flat.tr].reshape(-1, n_grid)  # (T, grid)
    c0 = flat.chan0.reshape(-1, n_grid)
    c1 = c0 + flat.n_chan.reshape(-1, n_grid)
    c0 = np.minimum.reduceat(np.where(c1 > c0, c0, m), starts[:-1], axis=1)  # (T, n_sigma)
    c1 = np.maximum.reduceat(c1, starts[:-1], axis=1)
    c0 = [np.min(c0[group[:, 0] == j], axis=0, initial=m) for j in range(k)]  # (k, n_sigma)
    c1 = [np.max(c1[group[:, 0] == j], axis=0, initial=0) for j in range(k)]
    b = np.zeros((k, n, n_grid))
    for i, (i0, i1) in enumerate(zip(starts[:-1], starts[1:])):
        for j in range(k):
            lo, hi = c0[j][i], c1[j][i]
            if hi <= lo:
                continue
            mat = np.ascontiguousarray(lw[i0:i1, lo:hi, j])
            out = np.matmul(mat, zb[:, lo:hi, :])  # (nb, grid points, block)
            b[j, :, i0:i1] = out.transpose(0, 2, 1).reshape(nb * _ROW_BLOCK, i1 - i0)[:n]
    # chi2 - |z|^2 = -b^T M^-1 b, elementwise in a fixed order
    quad = np.zeros((n, n_grid))
    for cols in _window_groups(ctx):
        for jj, j in enumerate(cols):
            quad += minv[:, j, j] * (b[j] * b[j])
            for l in cols[jj + 1 :]:
                quad += (2.0 * minv[:, j, l]) * (b[j] * b[l])
    chi2 = -quad.T  # (grid, n)
    cols = np.arange(n)
    # velocity: parabola within the row of the best point
    best = np.argmin(chi2, axis=0)
    row = np.searchsorted(starts, best, side="right") - 1
    j = best - starts[row]
    n_v = np.diff(starts)[row]
    inner = (j > 0) & (j < n_v - 1)
    jm, jp = np.where(inner, best - 1, best), np.where(inner, best + 1, best)
    dv = np.array([v[1] - v[0] if v.size > 1 else 0.0 for v in velocities])[row]
    v0 = theta[best, 0] + dv * _parabola_shift(chi2[jm, cols], chi2[best, cols], chi2[jp, cols])
    # dispersion: parabola in log sigma through the best chi^2 of each row
    row_min = np.array([np.min(chi2[i0:i1], axis=0) for i0, i1 in zip(starts[:-1], starts[1:])])
    inner = (row > 0) & (row < sigmas.size - 1)
    rm, rp = np.where(inner, row - 1, row), np.where(inner, row + 1, row)
    dlog = np.log(sigmas[1] / sigmas[0])
    shift = _parabola_shift(row_min[rm, cols], row_min[row, cols], row_min[rp, cols])
    s0 = sigmas[row] * np.exp(0.5 * dlog * shift)
    return np.column_stack([v0, s0])


def _window_groups(ctx):
    """Line-column indices coupled by ``M``: the groups of every window (merged if shared)."""
    pb, st = ctx.problem, ctx.st
    sets = []
    for c in range(pb.n_components):
        for _, sl in st.windows:
            cols = set((c * pb.n_groups + st.group[sl]).tolist())
            for other in [s for s in sets if s & cols]:
                cols |= other
                sets.remove(other)
            sets.append(cols)
    return [sorted(s) for s in sets]


def _two_component_candidates(theta1, sigma_bounds):
    """Candidate starting points of a two-component fit, shape (n_cand, n, 4).

    Component 1 keeps the one-component velocity with its dispersion or half
    of it; component 2 is offset by 0, +-150 or +-300 km/s with a dispersion
    of sigma + 50 km/s or 2.5 sigma + 50 km/s.
    """
    v1, s1 = theta1[:, 0], theta1[:, 1]
    cands = [
        np.column_stack([v1, f1 * s1, v1 + dv, f2 * s1 + 50.0])
        for f1 in (1.0, 0.5)
        for dv in (-300.0, -150.0, 0.0, 150.0, 300.0)
        for f2 in (1.0, 2.5)
    ]
    cands = np.asarray(cands)
    cands[..., 1::2] = np.clip(cands[..., 1::2], *sigma_bounds)
    return cands


def _starting_points(problem, ctx, v_bounds, sigma_bounds, v_scan_kms, sigma_scan_kms):
    """Starting ``(v, sigma[, v2, sigma2])`` of the realisations of ``ctx``.

    One component: the best point of :func:`_scan_grid`.  Two components:
    the best of :func:`_two_component_candidates` around it.
    """
    problem1 = replace(problem, n_components=1)
    theta = _scan(ctx.with_problem(problem1), _scan_grid(problem1, v_scan_kms, sigma_scan_kms))
    theta = _clip_theta(theta, v_bounds, sigma_bounds)
    if problem.n_components == 1:
        return theta
    cands = _clip_theta(
        _two_component_candidates(theta, sigma_bounds).reshape(-1, 4), v_bounds, sigma_bounds
    ).reshape(-1, ctx.n_real, 4)
    chi2 = np.array([ctx.evaluate(c) for c in cands])
    return cands[np.argmin(chi2, axis=0), np.arange(ctx.n_real)]


# ---------------------------------------------------------------------------
# batched damped Newton
# ---------------------------------------------------------------------------


def _to_internal(theta):
    """``(v, sigma, ...)`` -> ``(v, sigma**2, ...)``."""
    out = np.array(theta, dtype=float)
    out[:, 1::2] = out[:, 1::2] ** 2
    return out


def _to_theta(p):
    """``(v, sigma**2, ...)`` -> ``(v, sigma, ...)``."""
    out = np.array(p, dtype=float)
    out[:, 1::2] = np.sqrt(out[:, 1::2])
    return out


def _clip_theta(theta, v_bounds, sigma_bounds):
    out = np.array(theta, dtype=float)
    out[:, 0::2] = np.clip(out[:, 0::2], *v_bounds)
    out[:, 1::2] = np.clip(out[:, 1::2], *sigma_bounds)
    return out


def _min_eigenvalue(a):
    """Smallest eigenvalue of every symmetric matrix ``a`` (n, p, p); closed form for p = 2."""
    if a.shape[-1] != 2:
        return np.linalg.eigvalsh(a)[:, 0]
    half_tr = 0.5 * (a[:, 0, 0] + a[:, 1, 1])
    half_diff = 0.5 * (a[:, 0, 0] - a[:, 1, 1])
    return half_tr - np.sqrt(half_diff * half_diff + a[:, 0, 1] * a[:, 0, 1])


def _solve_sym(a, b):
    """``a^-1 b`` for symmetric matrices ``a`` (n, p, p) and ``b`` (n, p); Cramer's rule for p = 2."""
    if a.shape[-1] != 2:
        return np.linalg.solve(a, b[:, :, None])[:, :, 0]
    a00, a01, a11 = a[:, 0, 0], a[:, 0, 1], a[:, 1, 1]
    det = a00 * a11 - a01 * a01
    return np.column_stack([a11 * b[:, 0] - a01 * b[:, 1], a00 * b[:, 1] - a01 * b[:, 0]]) / det[:, None]


def _newton(ctx, theta0, v_bounds, sigma_bounds, rows=None, max_iter=100, xtol=1e-2, ftol=1e-9):
    """Batched, bounded, damped Newton minimisation of the projected chi^2.

    The parameters are ``(v, log(sigma**2 + s_L**2))`` per component
    internally, with ``s_L`` the smallest instrumental sigma of the lines:
    regular at ``sigma = 0`` like ``sigma**2``, but nearly the logarithm of
    the observed line width, in which the projected chi^2 is much closer to
    a parabola (fewer iterations from a start off by tens of per cent).  The
    step solves ``(H + lambda D) step = -g`` with the gradient ``g`` of
    :meth:`_Projected.evaluate`, ``H`` the exact Hessian where it is positive
    definite (near a minimum: quadratic convergence) and the Gauss-Newton
    matrix elsewhere (as MINPACK, which keeps the descent local), ``D`` the
    diagonal of the Gauss-Newton matrix and ``lambda`` adapted as in
    Levenberg-Marquardt (divided by 5 after a successful step; after a
    failed one multiplied by 4, and at least 0.25, which shortens the step at
    once).  A parameter on a bound that the gradient pushes outwards
    is held fixed for the step; a parameter that the step would take past a
    bound is put on it, and the step of the others is solved again with it
    held there.  A realisation has converged when a step moves no velocity
    or dispersion by more than ``xtol`` [km/s], when both the actual and the
    predicted relative decrease of chi^2 are below ``ftol`` (as MINPACK), or
    when the damping has grown so large that no step improves chi^2.

    Returns
    -------
    theta : ndarray, shape (n, p)
        ``(v, sigma, ...)`` at the minimum.
    success : ndarray of bool, shape (n,)
        False where ``max_iter`` was reached.
    chi2 : ndarray, shape (n,)
        Chi^2 at ``theta``.
    beta : ndarray, shape (n, k)
        Best linear parameters at ``theta`` (scaled units).
    """
    rows = np.arange(ctx.n_real) if rows is None else rows
    n_comp = theta0.shape[1] // 2
    ls2 = float(np.min(ctx.problem.trans.lsf_kms)) ** 2
    s_lo, s_hi = sigma_bounds[0] ** 2, sigma_bounds[1] ** 2

    def to_theta(par):
        out = np.array(par, dtype=float)
        out[:, 1::2] = np.sqrt(np.clip(np.exp(par[:, 1::2]) - ls2, s_lo, s_hi))
        return out

    def evaluate(par, r):
        th = to_theta(par)
        chi2, jtj, g, h, beta = ctx.evaluate(th, r, order=2, linear=True)
        # chain rule from q = sigma**2 to p = log(q + ls2): dq/dp = d2q/dp2 = q + ls2
        sc = np.ones(g.shape)
        sc[:, 1::2] = th[:, 1::2] ** 2 + ls2
        g = g * sc
        s2 = sc[:, :, None] * sc[:, None, :]
        jtj = jtj * s2
        h = h * s2
        i = np.arange(1, g.shape[1], 2)
        h[:, i, i] += g[:, 1::2]
        return chi2, jtj, g, h, beta

    lo = np.tile([v_bounds[0], np.log(s_lo + ls2)], n_comp)
    hi = np.tile([v_bounds[1], np.log(s_hi + ls2)], n_comp)
    pint = np.array(theta0, dtype=float)
    pint[:, 1::2] = np.log(pint[:, 1::2] ** 2 + ls2)
    pint = np.clip(pint, lo, hi)
    n, p = pint.shape
    chi2, jtj, grad, hess, beta = evaluate(pint, rows)
    lam = np.full(n, 1e-3)
    active = np.ones(n, dtype=bool)
    eye = np.eye(p)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        g, h, par = grad[idx], hess[idx], pint[idx]
        free = ~(((par <= lo) & (g > 0)) | ((par >= hi) & (g < 0)))
        ff = free[:, :, None] & free[:, None, :]
        d = np.einsum("nii->ni", jtj[idx])
        d = np.maximum(d, 1e-12 * np.max(d, axis=1, keepdims=True) + 1e-300)
        sd = np.sqrt(d)
        hs = np.where(ff, h / (sd[:, :, None] * sd[:, None, :]), 0.0) + (~free)[:, :, None] * eye
        newton = _min_eigenvalue(hs) > 1e-6
        h = np.where(newton[:, None, None], h, jtj[idx])
        damped = h + lam[idx, None, None] * d[:, :, None] * eye
        dfree = np.where(ff, damped, 0.0) + (~free)[:, :, None] * eye
        step = -_solve_sym(dfree, np.where(free, g, 0.0))
        # a free parameter that the step takes past a bound is put on the
        # bound, and the step of the others is solved again with it fixed
        hit = free & ((par + step < lo) | (par + step > hi))
        if np.any(hit):
            sb = np.where(hit, np.clip(par + step, lo, hi) - par, 0.0)
            free2 = free & ~hit
            ff2 = free2[:, :, None] & free2[:, None, :]
            rhs = g + (damped @ sb[:, :, None])[:, :, 0]
            d2 = np.where(ff2, damped, 0.0) + (~free2)[:, :, None] * eye
            s2 = -_solve_sym(d2, np.where(free2, rhs, 0.0))
            step = np.where(hit.any(axis=1)[:, None], np.where(hit, sb, s2), step)
        trial = np.clip(par + step, lo, hi)
        step = trial - par
        gs = (g[:, None, :] @ step[:, :, None])[:, 0, 0]
        shs = (step[:, None, :] @ h @ step[:, :, None])[:, 0, 0]
        predicted = -(2.0 * gs + shs)
        moved = np.max(np.abs(to_theta(trial) - to_theta(par)), axis=1)
        # when the undamped Newton step from the current point is this small,
        # the current point is the minimum to within ~xtol: stop without
        # another evaluation
        final = (moved < xtol) & newton & (lam[idx] < 1e-2)
        active[idx[final]] = False
        idx, trial, predicted, moved = idx[~final], trial[~final], predicted[~final], moved[~final]
        if idx.size == 0:
            break
        chi2_t, jtj_t, grad_t, hess_t, beta_t = evaluate(trial, rows[idx])
        actual = chi2[idx] - chi2_t
        better = actual > 0
        acc = idx[better]
        pint[acc], chi2[acc], beta[acc] = trial[better], chi2_t[better], beta_t[better]
        jtj[acc], grad[acc], hess[acc] = jtj_t[better], grad_t[better], hess_t[better]
        lam[acc] = np.maximum(lam[acc] / 5.0, 1e-9)
        # after a failed step the damping is raised at once to a level that
        # shortens the step (lambda ~ 1: between Newton and steepest descent)
        lam[idx[~better]] = np.maximum(lam[idx[~better]] * 4.0, 0.25)
        tiny = (np.abs(actual) <= ftol * chi2[idx]) & (np.abs(predicted) <= ftol * chi2[idx])
        done = (moved < xtol) | tiny | (lam[idx] > 1e12)
        active[idx[done]] = False
    return to_theta(pint), ~active, chi2, beta


def _fit_fast(problem, contexts, theta0, v_bounds, sigma_bounds):
    """Variable-projection fit of all realisations (see the module docs)."""
    n = theta0.shape[0]
    theta = np.empty_like(theta0)
    beta = np.empty((n, problem.n_line_cols + problem.n_cont))
    chi2 = np.empty(n)
    success = np.empty(n, dtype=bool)
    for rows, ctx in contexts:
        for start in range(0, rows.size, _CHUNK):
            local = np.arange(start, min(rows.size, start + _CHUNK))
            out = rows[local]
            theta[out], success[out], chi2[out], beta[out] = _newton(
                ctx, theta0[out], v_bounds, sigma_bounds, rows=local
            )
    return theta, beta, chi2, success


# ---------------------------------------------------------------------------
# the reference fitter: lmfit on all parameters
# ---------------------------------------------------------------------------


def _fit_lmfit(problem, data, theta0, v_bounds, sigma_bounds):
    """lmfit (MINPACK) fit of every realisation on all parameters at once."""
    import lmfit  # imported here: slow to import and only needed for the reference

    n, p = theta0.shape
    k_lines = problem.n_line_cols
    k = k_lines + problem.n_cont
    beta0, _ = _dense_linear(problem, data, _clip_theta(theta0, v_bounds, sigma_bounds))
    kin_names = [f"{q}{c + 1}" for c in range(problem.n_components) for q in ("v", "sigma")]
    lin_names = [
        f"amp{c + 1}_{g}" for c in range(problem.n_components) for g in problem.groups
    ] + [f"cont{j}" for j in range(problem.n_cont)]
    theta = np.empty((n, p))
    beta = np.empty((n, k))
    chi2 = np.empty(n)
    success = np.empty(n, dtype=bool)
    for i in range(n):
        y, w = data.y[i], data.w[i]

        def residual(params, y=y, w=w):
            th = np.array([[params[name].value for name in kin_names]])
            coef = np.array([params[name].value for name in lin_names])
            cols = problem.line_columns(th)[0]
            model = cols @ coef[:k_lines] + problem.cont_basis @ coef[k_lines:]
            return w * (y - model)

        unused = k_lines + np.flatnonzero(_cont_without_data(problem, w > 0))
        params = lmfit.Parameters()
        for j, name in enumerate(kin_names):
            lo, hi = v_bounds if name.startswith("v") else sigma_bounds
            params.add(name, value=float(np.clip(theta0[i, j], lo, hi)), min=lo, max=hi)
        for j, name in enumerate(lin_names):
            if j in unused:  # the continuum of a window without data
                params.add(name, value=0.0, vary=False)
            else:
                params.add(name, value=float(beta0[i, j]))
        out = lmfit.Minimizer(residual, params).minimize(method="leastsq", **_LMFIT_TOL)
        theta[i] = [out.params[name].value for name in kin_names]
        beta[i] = [out.params[name].value for name in lin_names]
        beta[i, unused] = np.nan
        chi2[i] = out.chisqr
        success[i] = out.success
    return theta, beta, chi2, success


# ---------------------------------------------------------------------------
# the result and the public entry point
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# upper limits
# ---------------------------------------------------------------------------


def three_channel_flux(wave_um, flux_realisations, z, line, grating):
    """Flux in the three channels centred on a redshifted line.

    The channel nearest to the observed (flux-weighted) wavelength of
    ``line`` and its two neighbours are summed, each weighted by its width;
    nothing is subtracted.  The standard deviation of this sum over the Monte
    Carlo realisations gives the 3-sigma upper limit of an undetected line
    (SPEC section 5, see :func:`ismcgm.mc.summarise`).

    Parameters
    ----------
    wave_um : array_like, shape (n_wave,)
        Channel centres [micron].
    flux_realisations : array_like, shape (n_wave,) or (n_real, n_wave)
        Flux density F_lambda (e.g. erg/s/cm^2/A).
    z : float
        Systemic redshift.
    line : str
        Instrument line name (e.g. ``"NII6583"``).
    grating : str or ismcgm.instrument.Grating
        Grating; the line must lie inside its coverage.

    Returns
    -------
    numpy.ndarray, shape (n_real,) or scalar
        Summed flux (e.g. erg/s/cm^2); NaN if one of the channels is NaN.
    """
    g = grating if isinstance(grating, instrument.Grating) else instrument.get_grating(grating)
    if line not in instrument.LINE_WAVELENGTHS:
        raise ValueError(f"unknown line {line!r}: use {', '.join(instrument.LINE_WAVELENGTHS)}")
    wave_um = np.asarray(wave_um, dtype=float)
    flux = np.asarray(flux_realisations, dtype=float)
    lam = instrument.observed_wavelength_um(line, z)
    if not (g.covers(lam) and wave_um[0] <= lam <= wave_um[-1]):
        raise ValueError(f"{line} at z={z:.4f} ({lam:.4f} um) is outside {g.name} / the spectrum")
    i = int(np.clip(np.argmin(np.abs(wave_um - lam)), 1, wave_um.size - 2))
    dlam_A = np.diff(channel_edges_um(wave_um))[i - 1 : i + 2] * 1e4
    # elementwise, in a fixed order: the same value for a realisation in any batch
    return flux[..., i - 1] * dlam_A[0] + flux[..., i] * dlam_A[1] + flux[..., i + 1] * dlam_A[2]
