"""The reference fitter: the same model minimised with lmfit (``method="lmfit"``), kept to check the fast fitter."""

from __future__ import annotations

import numpy as np

from .fast import _clip_theta
from .model import _LMFIT_TOL, _cont_without_data, _dense_linear


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
