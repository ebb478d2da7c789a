"""The emission-line model of the fitter: pixel-integrated Gaussian lines on Legendre continua, the fit windows and the linear (amplitude) solution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre
from scipy.special import ndtr

from .. import instrument

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
