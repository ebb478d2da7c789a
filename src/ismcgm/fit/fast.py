"""The fast fitter: the amplitudes profiled out with precomputed stencils (:class:`_Projected`) and a damped Newton iteration on the non-linear parameters."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from .model import _C, _CHUNK, _INV_SQRT_2PI, _centres_widths, _inv_normal

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
