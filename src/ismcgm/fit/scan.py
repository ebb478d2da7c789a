"""Starting points of the fit: a grid scan of velocity and dispersion per line group, refined by a parabola, and the two-component candidates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .fast import _ROW_BLOCK, _clip_theta
from .model import _inv_normal


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
