"""The [C II] Gaussian fit without lmfit's bookkeeping (issue 17).

:func:`ismcgm.cii.fit_cii` fits with ``lmfit.minimize`` (``leastsq``), which
wraps MINPACK's ``lmdif`` (:func:`scipy.optimize.leastsq`) in its
:class:`lmfit.Parameters` machinery: every function evaluation sets the
parameters one by one, re-evaluates the constraints and copies arrays, so a
3-parameter fit of ~70 channels spends most of its ~1-10 ms outside the
model, and importing lmfit costs ~0.3 s per job.  A region takes ~110 fits
(the nominal fit from six starts, three analytic-error fits, 100
realisations).

:func:`leastsq_gaussian` runs *the same* computation directly for the
workflow's model (one Gaussian, no constant, free kinematics, with errors):
the same MINPACK call with lmfit's options (``ftol = xtol = 1.5e-8, gtol =
0, epsfcn = 1e-10, factor = 100``), lmfit's MINUIT-style bound transform
``x = lo + (sin(u) + 1) (hi - lo) / 2`` written with the same floating-point
operations in the same order, the same start (lmfit's ``setup_bounds``), the
same residual expression (:func:`ismcgm.cii.measure._residual`), lmfit's
abort after ``2000 (n_vary + 1)`` evaluations, its ``nan_policy='raise'``,
its final statistics and its covariance transform.  ``fit_cii(...,
engine='auto')`` (the default) is therefore *bit-identical* to
``engine='lmfit'`` (``tests/test_cii.py`` checks every field on the regions
of mock galaxies, their Monte Carlo realisations and noise-only spectra
whose fits run to the bounds); the other models go through lmfit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy import arcsin, cos, sin


#: lmfit's ``tiny`` (``lmfit.lineshapes.tiny``): internal start values below it are set to 0.
_TINY = 1.0e-15

#: lmfit's ``leastsq`` options (``lmfit.Minimizer.leastsq``).
_LEASTSQ_KW = dict(Dfun=None, full_output=1, col_deriv=0, ftol=1.5e-8, xtol=1.5e-8, gtol=0.0, epsfcn=1.0e-10,
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


@dataclass
class DirectFit:
    """What ``lmfit.minimize`` returns that :func:`ismcgm.cii.fit_cii` uses, for one Gaussian.

    ``covar``: the covariance of (amplitude, centre, sigma) in external units, as lmfit's
    ``MinimizerResult.covar`` (None where MINPACK gives none).
    """

    amplitude: float
    center: float
    sigma: float
    chisqr: float
    redchi: float
    success: bool
    covar: np.ndarray | None


def leastsq_gaussian(v, y, w, start, bounds) -> DirectFit:
    """One ``lmfit.minimize(method='leastsq', scale_covar=False)`` of a Gaussian without a constant.

    ``v, y, w``: velocities, data and weights (1/error) of the valid channels; ``start``:
    (amplitude, centre, sigma) within the bounds; ``bounds``: ((c_lo, c_hi), (s_lo, s_hi)).
    The same MINPACK call, parameter transform, abort rule, final residual, statistics and
    covariance transform as lmfit 1.3 (``Minimizer.leastsq``, ``_int2ext_cov_x``).
    """
    from scipy.optimize import leastsq

    (c_lo, c_hi), (s_lo, s_hi) = bounds
    x0 = [float(start[0]), _to_internal(start[1], c_lo, c_hi), _to_internal(start[2], s_lo, s_hi)]
    if abs(x0[0]) < _TINY:
        x0[0] = 0.0
    norm = np.sqrt(2 * np.pi)
    max_nfev = 2000 * (3 + 1)
    state = {"nfev": -2, "last": None, "check": True}

    def residual(u):
        state["nfev"] += 1
        state["last"] = u
        if state["check"] and state["nfev"] > max_nfev:
            raise _Abort
        a = float(u[0])
        c = _bounded(u[1], c_lo, c_hi)
        s = _bounded(u[2], s_lo, s_hi)
        # lmfit's model, 0 + a / (norm s) exp(-0.5 ((v - c) / s)^2), and (model - y) w, with the same operations
        # in the same order, in place (~25 % of a fit's time is spent here; issue 17); only the sign of a zero
        # can differ from lmfit's '0 +', which neither the squares nor the differences of MINPACK see
        r = v - c
        r /= s
        r *= r
        r *= -0.5
        np.exp(r, out=r)
        r *= a / (norm * s)
        r -= y
        r *= w
        if not np.isfinite(r).all():  # lmfit's nan_policy='raise' (infinities included)
            raise ValueError("non-finite residuals in the [C II] fit")
        return r

    with np.errstate(all="ignore"):
        try:
            best, cov, _, _, ier = leastsq(residual, x0, maxfev=2 * max_nfev, **_LEASTSQ_KW)
        except _Abort:
            best, cov, ier = state["last"], None, -1
        state["check"] = False  # lmfit resets its count before the final evaluation
        r = residual(best)
        chisqr = (r**2).sum()
        redchi = chisqr / max(1, len(r) - 3)
        chisqr = max(chisqr, 1.0e-250 * len(r))
        if cov is not None:
            g = np.atleast_2d([1.0, cos(best[1]) * (c_hi - c_lo) / 2.0, cos(best[2]) * (s_hi - s_lo) / 2.0])
            cov = cov * np.dot(g.T, g)
    return DirectFit(float(best[0]), _bounded(best[1], c_lo, c_hi), _bounded(best[2], s_lo, s_hi), chisqr, redchi,
                     ier in (1, 2, 3, 4), cov)
