"""The [C II] fit of the Monte Carlo realisations without lmfit's bookkeeping (issue 17).

:func:`ismcgm.cii.fit_cii` fits with ``lmfit.minimize`` (``leastsq``), which
wraps MINPACK's ``lmdif`` (:func:`scipy.optimize.leastsq`) in its
:class:`lmfit.Parameters` machinery: every function evaluation sets the
parameters one by one, re-evaluates the constraints and copies arrays, so a
3-parameter fit of ~70 channels spends most of its ~1-10 ms outside the
model.  A region's 100 realisations are all fitted this way from the same
start (the nominal best fit).

:func:`leastsq_flux` runs *the same* computation directly: the same MINPACK
call with lmfit's options (``ftol = xtol = 1.5e-8, gtol = 0, epsfcn = 1e-10,
factor = 100``), lmfit's MINUIT-style bound transform
``x = lo + (sin(u) + 1) (hi - lo) / 2`` written with the same floating-point
operations in the same order, the same start (lmfit's ``setup_bounds``), the
same residual expression (:func:`ismcgm.cii.measure._residual`), lmfit's
abort after ``2000 (n_vary + 1)`` evaluations and its ``nan_policy='raise'``.
The fitted fluxes are therefore *bit-identical* to ``fit_cii(...).flux``
(``tests/test_cii.py`` checks it on every region and annulus of a mock
galaxy and on low-S/N spectra whose fits run to the bounds); only the
default model -- one Gaussian, no constant, free kinematics -- takes this
path (:func:`ismcgm.cii.fit_realisations` uses ``fit_cii`` for the others).
"""

from __future__ import annotations

import numpy as np
from numpy import arcsin, sin


#: lmfit's ``tiny`` (``lmfit.lineshapes.tiny``): internal start values below it are set to 0.
_TINY = 1.0e-15

#: lmfit's ``leastsq`` options (``lmfit.Minimizer.leastsq``).
_LEASTSQ_KW = dict(Dfun=None, full_output=0, col_deriv=0, ftol=1.5e-8, xtol=1.5e-8, gtol=0.0, epsfcn=1.0e-10,
                   factor=100, diag=None)


def initial_guess(v, y, n_gauss, v_max_offset, dv):
    """Starting values of the [C II] fit (``c_c``, ``g<k>_amplitude/center/sigma``): the peak of the
    3-channel-smoothed spectrum within ``v_max_offset``, the median beyond 400 km/s, the sum within 300 km/s."""
    near = np.abs(v) <= v_max_offset
    ys = np.convolve(np.nan_to_num(y), np.ones(3) / 3.0, mode="same")
    idx = np.flatnonzero(near)
    v0 = float(v[idx[np.argmax(ys[idx])]]) if idx.size else 0.0
    far = np.abs(v - v0) > 400.0
    c0 = float(np.median(y[far])) if far.sum() >= 3 else 0.0
    win = np.abs(v - v0) <= 300.0
    amp = float(np.sum(y[win] - c0) * dv) if win.any() else 0.0
    guess = {"c_c": c0}
    if n_gauss == 1:
        guess.update({"g1_amplitude": amp, "g1_center": v0, "g1_sigma": 100.0})
    else:
        guess.update({"g1_amplitude": max(0.6 * amp, 0.0), "g1_center": v0, "g1_sigma": 70.0,
                      "g2_amplitude": max(0.4 * amp, 0.0), "g2_center": v0, "g2_sigma": 200.0})
    return guess


class _Abort(Exception):
    """lmfit's AbortFitException: too many function evaluations."""


def _to_internal(value, lo, hi) -> float:
    """lmfit's ``Parameter.setup_bounds`` for two finite bounds."""
    u = arcsin(2 * (value - lo) / (hi - lo) - 1)
    return 0.0 if abs(u) < _TINY else float(u)


def _bounded(u, lo, hi) -> float:
    """lmfit's ``from_internal`` for two finite bounds, then its value setter's clip."""
    x = float(lo + (sin(u) + 1) * (hi - lo) / 2.0)
    return hi if x > hi else lo if x < lo else x


def leastsq_flux(velocity, spectrum, err, init: dict, v_max_offset: float = 300.0,
                 sigma_max: float = 400.0) -> float:
    """``fit_cii(velocity, spectrum, err=err, init=init).flux`` for one Gaussian, no constant.

    Parameters
    ----------
    velocity, spectrum, err : arrays (n,)
        As :func:`ismcgm.cii.fit_cii` (``err`` an array or a float, required).
    init : dict
        Starting values (the nominal fit's ``CiiFit.params``).
    v_max_offset, sigma_max
        As :func:`ismcgm.cii.fit_cii`.

    Returns
    -------
    float
        The fitted flux [Jy km/s].

    Raises
    ------
    ValueError
        As ``fit_cii``: too few valid channels, or a residual that is NaN.
    """
    from scipy.optimize import leastsq

    v = np.asarray(velocity, dtype=float)
    y = np.asarray(spectrum, dtype=float)
    e = np.broadcast_to(np.asarray(err, dtype=float), y.shape)
    ok = np.isfinite(v) & np.isfinite(y) & np.isfinite(e) & (e > 0)
    v, y, e = v[ok], y[ok], e[ok]
    if v.size <= 3:
        raise ValueError(f"only {v.size} valid channels for a 1-Gaussian fit")
    dv = float(np.median(np.abs(np.diff(v))))
    vmax = min(v_max_offset, float(np.max(np.abs(v))))
    start = dict(initial_guess(v, y, 1, vmax, dv))
    start.update({k: val for k, val in init.items() if k in start and np.isfinite(val)})
    smin = 0.5 * dv
    c_lo, c_hi = -vmax, vmax
    s_lo, s_hi = smin, sigma_max
    x0 = [float(start["g1_amplitude"]),
          _to_internal(float(np.clip(start["g1_center"], -vmax, vmax)), c_lo, c_hi),
          _to_internal(float(np.clip(start["g1_sigma"], smin * 1.01, sigma_max * 0.99)), s_lo, s_hi)]
    if abs(x0[0]) < _TINY:
        x0[0] = 0.0
    w = 1.0 / e
    norm = np.sqrt(2 * np.pi)
    max_nfev = 2000 * (3 + 1)
    state = {"nfev": -2, "last": None}  # lmfit counts from -2 and aborts beyond max_nfev

    def residual(u):
        state["nfev"] += 1
        state["last"] = u
        if state["nfev"] > max_nfev:
            raise _Abort
        a = float(u[0])
        c = _bounded(u[1], c_lo, c_hi)
        s = _bounded(u[2], s_lo, s_hi)
        out = np.full(v.shape, 0.0)
        out = out + a / (norm * s) * np.exp(-0.5 * ((v - c) / s) ** 2)
        r = (out - y) * w
        if not np.isfinite(r).all():  # lmfit's nan_policy='raise' (infinities included)
            raise ValueError("non-finite residuals in the [C II] fit")
        return r

    with np.errstate(all="ignore"):
        try:
            best = leastsq(residual, x0, maxfev=2 * max_nfev, **_LEASTSQ_KW)[0]
        except _Abort:
            best = state["last"]
    return float(best[0])
