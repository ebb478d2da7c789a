"""Intrinsic component ratios: each galaxy's region fluxes split into an ISM term and a halo term.

The paper's ISM and CGM fluxes are the light that falls in two masks; the
halo is projected onto the ISM mask and the PSF spreads ISM light into the
CGM annulus, so the aperture CGM - ISM shift is a diluted version of the
difference between the two gas components (README, "Intrinsic component
ratios").  This module undoes the mixing with the geometric transfer matrix
of :mod:`ismcgm.transfer` (the same one the [C II] beam-spill correction
uses).

Model (per galaxy; a merger has two components, each with both terms)
---------------------------------------------------------------------
Every line's sky is ``sum_c a_c ISM_c + b_c HALO_c``:

``ISM_c`` (:func:`ism_terms`)
    The continuum image, PSF-matched to the IFU PSF and reprojected onto the
    aligned IFU grid exactly as the ISM mask is made
    (:func:`ismcgm.imaging.psf_match`, :func:`ismcgm.masks.reproject_sb`),
    background subtracted and cut to the source: the connected regions above
    :data:`SOURCE_NSIGMA` times the template's own noise that hold an ISM
    mask, grown by one IFU PSF FWHM to keep the PSF wings, zero elsewhere
    (:func:`source_region`); for a merger split by the masks' perpendicular
    bisector.  The ISM line emission is taken to follow the stellar
    continuum.  Without the cut the image noise over the whole field enters
    the term as spurious structure: on the noisy paper-geometry mock the
    fitted halo scale lengths came out ~2x too small (0.14-0.19" against
    0.29-0.44").
``HALO_c`` (:func:`halo_term`)
    A circular exponential ``exp(-r / h)`` (Sérsic n = 1) centred on the
    component position, 10x oversampled on a grid padded by 12 h, normalised
    to unit total flux there and convolved with the circular Gaussian IFU
    PSF (``ifu_psf_fwhm``; :func:`halo_term`).  ``h`` (one per galaxy) is
    fitted over every valid spaxel of the reference cube's field: for each
    ``h`` the term fluxes are a linear least-squares fit, ``h`` minimises the
    residual (``scipy.optimize.minimize_scalar``, bounded, in log h) -- the
    halo's profile is fixed by the CGM annulus and the field beyond it, the
    ISM term by the ISM.  Config ``intrinsic.halo_fit`` (:data:`HALO_FITS`):
    ``sersic`` (default) fits the Ha, [O III]5007, Hb and [O III]4959 maps the
    reference cube covers (each its own term fluxes, chi^2 with each map's
    noise, non-negative fluxes) with the ISM terms replaced *in this fit* by
    PSF-convolved Sérsic profiles fitted to them (:func:`sersic_ism_models`);
    ``image`` fits the Ha map ([O III]5007 where Ha is not covered) with the
    ISM terms themselves, unweighted.  The ISM term is cut to its source, so
    its faint wings are missing, and it carries the image noise: with the
    ``image`` fit a compact halo (h ~ the PSF) stands in for them on about a
    quarter of the noisy paper-geometry mock's galaxies (0.15-0.19" against
    0.28-0.35" injected); with ``sersic`` the fitted h are within -0.06 to
    +0.07 dex (16-84 %) of the injected ones (``bench/halo_fit.py``, README).
    The Sérsic stand-ins are a model of the continuum: a clumpy ISM is fitted
    less well (on a constructed lopsided two-Gaussian ISM h comes out 1 %
    high, ``tests/test_decompose.py``).

``T[m, k]`` is the fraction of term ``k``'s total flux (integrated to
infinity) in mask ``m`` (ISM, CGM or ISM_A, CGM_A, ISM_B, CGM_B), so the
measured region fluxes are ``F = T (a, b)`` and the term fluxes ``T^-1 F``,
applied to every Monte Carlo realisation (:func:`decompose_realisations`) of
every line and grating -- the observed (not dust-corrected) fluxes; the dust
correction and the ratios then run on the term fluxes exactly as on the
region fluxes (:func:`intrinsic_line_fluxes`), so each term gets its own
E(B-V) from its own Ha/Hb.  In the output tables ``region`` ISM/CGM names the
term (ISM component, halo component).  One matrix per galaxy, on the mask
grid; the gratings' cubes are carried onto it as the extraction does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from . import cii as cii_mod
from . import linefluxes, mc, stacking
from . import ratios as rat
from .constants import FWHM_PER_SIGMA, proper_kpc_per_arcsec
from .errors import InputError
from .imaging import image_noise, psf_match
from .linemap import line_map, line_snr_maps
from .maskio import read_masks
from .masks import _bisector_side_a, _positions, reproject_sb
from .regions import extension_region
from .seeding import rng
from .transfer import solvable, solve_operator, transfer_matrix
from .wcsutil import pixscale_arcsec

#: The two terms, named as the regions they stand for in the intrinsic tables.
TERMS = ("ISM", "CGM")

#: Columns of the per-galaxy transfer table (``results/intrinsic/<variant>/<id>_transfer.csv``).
TRANSFER_COLUMNS = ("id", "mask", "mask_component", "mask_region", "term_component", "term", "t", "halo_h_arcsec",
                    "halo_h_kpc", "fit_line")

#: Columns of the per-galaxy posterior table (``results/intrinsic/<variant>/<id>_transfer_h.csv``): the transfer
#: table at each scale length of the halo's posterior (``h_index`` 0, 1, ... in increasing h), with the posterior
#: weight of that h.
POSTERIOR_COLUMNS = TRANSFER_COLUMNS + ("h_index", "h_weight")

#: Header of the intrinsic tables.
RATIOS_COMMENT = ("INTRINSIC component ratios (ismcgm.decompose): region ISM = the ISM term (continuum morphology), "
                  "CGM = the halo term (exponential profile fitted per galaxy), fluxes = T^-1 x region fluxes per "
                  "realisation; not the paper's aperture values (ratios.csv)")
POSTERIOR_COMMENT = ("transfer matrix of the decomposition over the posterior of the halo's scale length: the "
                     "rows of <id>_transfer.csv at each h\n(halo_h_arcsec, numbered h_index) with its posterior "
                     "weight h_weight (ismcgm.decompose.halo_posterior); realisation i of the Monte Carlo uses "
                     "the h it draws")
TRANSFER_COMMENT = ("transfer matrix of the decomposition: t = fraction of term (term_component, term) flux in mask; "
                    "halo_h = fitted exponential scale length of the halo term")

#: Padding of the halo model grid in scale lengths (exp(-12)(1+12) ~ 1e-4 of the flux beyond it).
HALO_PAD_H = 12.0


def halo_term(shape, wcs, position, h_arcsec: float, psf_fwhm: float, oversample: int = 10) -> np.ndarray:
    """Unit-total-flux circular exponential of scale length ``h_arcsec`` at ``position``, at the IFU PSF.

    Parameters
    ----------
    shape : (int, int)
        Grid shape (ny, nx).
    wcs : astropy.wcs.WCS
        Celestial WCS of the grid (aligned).
    position : (float, float)
        RA, Dec [deg] of the centre.
    h_arcsec, psf_fwhm : float
        Scale length and Gaussian PSF FWHM [arcsec].

    Returns
    -------
    ndarray (ny, nx)
        The part of the unit flux that falls on the grid's pixels.
    """
    pix = pixscale_arcsec(wcs)
    x0, y0 = (float(v) for v in wcs.celestial.wcs_world2pix([[position[0], position[1]]], 0)[0])
    h_pix = h_arcsec / pix
    psf_sigma_pix = psf_fwhm / FWHM_PER_SIGMA / pix
    pad = int(np.ceil(HALO_PAD_H * h_pix + 4 * psf_sigma_pix))
    # a profile many pixels wide needs less oversampling; without this a fit that wanders to h ~ the field
    # (grid padded by 12 h) renders ~10^8 points per step (minutes per galaxy)
    factor = oversample if h_pix <= 5.0 else max(2, int(np.ceil(oversample * 5.0 / h_pix)))
    return _render(shape, pad, factor, psf_sigma_pix, _exponential(x0 + pad, y0 + pad, h_pix), unit_flux=True)


def _exponential(xc: float, yc: float, h_pix: float):
    """``exp(-r / h)`` about pixel ``(xc, yc)``: the circular Sersic n = 1 profile up to its normalisation, which
    :func:`halo_term` divides out (``Sersic2D`` evaluates it ~2x slower, through its ellipse rotation and
    ``z ** (1 / n)``; the two agree to 1e-14 relative; issue 17)."""
    def profile(x, y):
        # _render's discretize_model passes meshgrids (tests/test_decompose.py checks astropy): broadcast a row
        if (x.ndim == 2 and x.shape[0] > 1 and x.shape[1] > 1 and np.array_equal(x[0], x[-1])
                and np.array_equal(y[:, 0], y[:, -1])):
            x, y = x[:1, :], y[:, :1]
        return np.exp(-np.hypot(x - xc, y - yc) / h_pix)
    return profile


def _render_sersic(shape, x0, y0, pad: int, factor: int, psf_sigma_pix: float, unit_flux: bool = False,
                   **sersic) -> np.ndarray:
    """``Sersic2D(**sersic)`` centred on pixel (x0, y0) of ``shape``: discretized (``factor``x oversampled) on
    the grid padded by ``pad`` pixels (normalised to unit sum there with ``unit_flux``), convolved with a
    circular Gaussian PSF of ``psf_sigma_pix``, cropped to ``shape``."""
    from astropy.modeling.models import Sersic2D

    return _render(shape, pad, factor, psf_sigma_pix, Sersic2D(x_0=x0 + pad, y_0=y0 + pad, **sersic), unit_flux)


def _render(shape, pad: int, factor: int, psf_sigma_pix: float, model, unit_flux: bool = False) -> np.ndarray:
    """``model`` (an astropy model or a function of x, y in the padded grid's pixels) discretized
    (``factor``x oversampled) on ``shape`` padded by ``pad`` pixels (normalised to unit sum there with
    ``unit_flux``), convolved with a circular Gaussian PSF of ``psf_sigma_pix``, cropped to ``shape``."""
    from astropy.convolution import Gaussian2DKernel, convolve_fft, discretize_model

    ny, nx = shape
    img = discretize_model(model, (0, nx + 2 * pad), (0, ny + 2 * pad), mode="oversample", factor=factor)
    if unit_flux:
        img = img / img.sum()  # over the whole padded grid
    kernel = Gaussian2DKernel(psf_sigma_pix)
    # only the grid and the kernel's half-width reach the crop: convolve that, not the padding (zero-filled both)
    m = min(max(kernel.shape) // 2, pad)
    inner = img[pad - m:pad + ny + m, pad - m:pad + nx + m]
    conv = convolve_fft(inner, kernel, boundary="fill", fill_value=0.0, normalize_kernel=True)
    return conv[m:m + ny, m:m + nx]


def _sersic_image(shape, x0, y0, amplitude, r_eff_pix, n, ellip, theta, psf_sigma_pix, oversample=5):
    """An elliptical Sersic profile (pixel units) on ``shape`` at the PSF (:func:`_render_sersic`, padded by
    4 R_e + 4 PSF sigma)."""
    pad = int(np.ceil(4 * r_eff_pix + 4 * psf_sigma_pix))
    return _render_sersic(shape, x0, y0, pad, oversample, psf_sigma_pix, amplitude=amplitude, r_eff=r_eff_pix, n=n,
                          ellip=ellip, theta=theta)


def sersic_ism_models(ism, wcs, positions, psf_fwhm: float) -> list[np.ndarray]:
    """Smooth stand-ins of the ISM terms: a PSF-convolved Sersic profile fitted to each term's map.

    Each map of :func:`ism_terms` (non-zero on its source region) is fitted where it is non-zero with
    free amplitude, centre (within 3 spaxels of the component position), effective radius, index (0.3-8),
    ellipticity and angle (``scipy.optimize.least_squares``, start: n = 1 and the map's second moment); the
    model is returned on the whole grid.
    """
    from scipy.optimize import least_squares

    pix = pixscale_arcsec(wcs)
    psf_sig = psf_fwhm / FWHM_PER_SIGMA / pix
    shape = np.asarray(ism[0]).shape
    out = []
    for t, (_, pos) in zip(ism, positions):
        t = np.asarray(t, float)
        use = t != 0
        if use.sum() < 8:  # no source to fit (7 free parameters)
            out.append(np.zeros(shape))
            continue
        x0, y0 = (float(v) for v in wcs.celestial.wcs_world2pix([[pos[0], pos[1]]], 0)[0])
        yy, xx = np.nonzero(use)
        wts = np.clip(t[use], 0, None)
        r2 = np.sum(wts * ((xx - x0) ** 2 + (yy - y0) ** 2)) / max(wts.sum(), 1e-300)
        r0 = max(np.sqrt(max(r2, 0.0) / 2.0) - psf_sig, 0.5)
        amp0 = max(float(t[use].max()), 1e-300)
        # the fit renders only the box around the term's spaxels (the render pads by the profile itself)
        ya, yb = max(yy.min() - 1, 0), min(yy.max() + 2, shape[0])
        xa, xb = max(xx.min() - 1, 0), min(xx.max() + 2, shape[1])
        box_use, box_t = use[ya:yb, xa:xb], t[ya:yb, xa:xb]

        def resid(p):
            img = _sersic_image((yb - ya, xb - xa), p[1] - xa, p[2] - ya, amp0 * p[0], np.exp(p[3]), p[4], p[5], p[6],
                                psf_sig)
            return (img[box_use] - box_t[box_use]) / amp0

        p0 = [1.0, x0, y0, np.log(r0), 1.0, 0.1, 0.0]
        lo = [0.0, x0 - 3, y0 - 3, np.log(0.2), 0.3, 0.0, -np.pi]
        hi = [np.inf, x0 + 3, y0 + 3, np.log(max(shape)), 8.0, 0.9, np.pi]
        res = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac")
        p = res.x
        out.append(_sersic_image(shape, p[1], p[2], amp0 * p[0], np.exp(p[3]), p[4], p[5], p[6], psf_sig))
    return out


#: Threshold of the ISM term's source region, in units of the template's noise (:func:`source_region`).
SOURCE_NSIGMA = 2.0


def source_region(base: np.ndarray, ism_masks, grow_pix: int) -> np.ndarray:
    """Where the ISM term is kept: the connected regions of ``base`` above :data:`SOURCE_NSIGMA` times its
    noise (:func:`ismcgm.imaging.image_noise` on the IFU grid) that overlap an ISM mask, grown by
    ``grow_pix`` spaxels; the ISM masks themselves are always in."""
    _, sigma = image_noise(base)
    above = base > SOURCE_NSIGMA * sigma
    seed = np.zeros(base.shape, bool)
    for m in ism_masks:
        seed |= np.asarray(m, bool)
    labels, _ = ndimage.label(above)
    keep = np.unique(labels[seed & above])
    region = np.isin(labels, keep[keep > 0]) | seed
    return ndimage.binary_dilation(region, iterations=grow_pix) if grow_pix > 0 else region


def ism_terms(sb: np.ndarray, background: float, sides, region=None) -> list[np.ndarray]:
    """The ISM term(s): the PSF-matched continuum on the IFU grid minus its background, per merger side.

    ``sides`` is ``[None]`` for a single galaxy or ``[side_a, ~side_a]`` (bool arrays) for a merger;
    ``region`` (bool, :func:`source_region`): zero outside it.  The totals are the maps' sums over the
    field (the continuum beyond the field is negligible).
    """
    base = np.nan_to_num(np.asarray(sb, float) - float(background), nan=0.0)
    if region is not None:
        base = np.where(region, base, 0.0)
    return [base if s is None else np.where(s, base, 0.0) for s in sides]


def _term_fit(line_map, valid, ism, halos, weight=None, nonneg=False):
    """Least-squares term fluxes of ``line_map`` on ``valid`` spaxels and the (weighted) residual sum of squares.

    ``nonneg``: non-negative least squares (``scipy.optimize.nnls``), which keeps two nearly alike terms
    from cancelling each other with large fluxes of opposite sign.
    """
    design = np.stack([t[valid] for t in list(ism) + list(halos)], axis=1)
    y = line_map[valid]
    if weight is not None:
        w = weight[valid]
        design, y = design * w[:, None], y * w
    if nonneg:
        from scipy.optimize import nnls

        coef, _ = nnls(design, y)
    else:
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef, float(np.sum((y - design @ coef) ** 2))


#: How the halo scale length h is fitted (config ``intrinsic.halo_fit``; ``bench/halo_fit.py`` compares them on
#: the mock; README, "Intrinsic component ratios"):
#:
#: ``sersic`` (default)
#:     chi^2 with each line map's noise, summed over the bright lines of the reference cube
#:     (:data:`HALO_FIT_LINES`, each with its own term fluxes, one h), the ISM terms replaced *in this fit* by
#:     a PSF-convolved Sersic profile fitted to each (:func:`sersic_ism_models`), non-negative term fluxes;
#: ``image``
#:     least squares on the Ha map ([O III]5007 where Ha is not covered) with the ISM terms as they are.
#:
#: The transfer matrix uses the ISM terms as they are in both.
HALO_FITS = ("sersic", "image")

#: Lines of the ``sersic`` halo fit (those the reference cube covers).
HALO_FIT_LINES = ("HA", "OIII5007", "HB", "OIII4959")


class _HaloCost:
    """The cost of the halo fit as a function of log h, memoised: the cost and the halo maps of every h it
    was evaluated at (:func:`fit_halo_scale`, :func:`halo_posterior`)."""

    def __init__(self, line_map, valid, ism, render, noise=None, nonneg: bool = False):
        maps = list(line_map) if isinstance(line_map, (list, tuple)) else [line_map]
        noises = ([None] * len(maps) if noise is None
                  else (list(noise) if isinstance(noise, (list, tuple)) else [noise]))
        self.fits = []  # (map, spaxels, weights)
        for m, n in zip(maps, noises):
            m = np.asarray(m, float)
            ok = valid & np.isfinite(m)
            w = None
            if n is not None:
                n = np.asarray(n, float)
                ok &= np.isfinite(n) & (n > 0)
                w = np.divide(1.0, n, out=np.zeros_like(n), where=ok)
            if ok.any():  # a map without a usable spaxel (e.g. a line in a detector gap) adds nothing
                self.fits.append((np.nan_to_num(m, nan=0.0), ok, w))
        self.ism, self.render, self.nonneg = ism, render, nonneg
        self.evals: dict[float, tuple[float, list]] = {}  # h -> (cost, halo maps)

    def __call__(self, log_h) -> float:
        h = float(np.exp(log_h))
        if h not in self.evals:
            halos = self.render(h)
            cost = sum(_term_fit(y, ok, self.ism, halos, w, self.nonneg)[1] for y, ok, w in self.fits)
            self.evals[h] = (cost, halos)
        return self.evals[h][0]

    @property
    def dof(self) -> int:
        """Degrees of freedom of the fit: fitted spaxels minus term fluxes minus h."""
        n = sum(int(ok.sum()) for _, ok, _ in self.fits)
        return max(n - 2 * len(self.ism) * len(self.fits) - 1, 1)  # an ISM and a halo term per component


def fit_halo_scale(line_map, valid, ism, render, h_bounds, noise=None, nonneg: bool = False,
                   return_cost: bool = False):
    """Scale length [arcsec] of the halo terms that best fits ``line_map`` with the ISM terms (module doc).

    Parameters
    ----------
    line_map : ndarray or list of ndarray
        Line map(s); with several, one h and each map its own term fluxes (the chi^2 are summed).
    valid : ndarray of bool
        Spaxels of the fit.
    ism : list of ndarray
        The ISM term maps.
    render : callable
        ``render(h)`` returns the halo term maps for scale length ``h``.
    h_bounds : (float, float)
        Bounds of h [arcsec].
    noise : ndarray or list of ndarray, optional
        Noise maps of the line maps (chi^2 weights; None: unweighted least squares).
    nonneg : bool
        Non-negative term fluxes (:func:`_term_fit`).
    return_cost : bool
        Also return the memoised cost (for :func:`halo_posterior`).

    Returns
    -------
    float, or (float, _HaloCost) with ``return_cost``
    """
    from scipy.optimize import minimize_scalar

    cost = _HaloCost(line_map, valid, ism, render, noise, nonneg)
    res = minimize_scalar(cost, bounds=(np.log(h_bounds[0]), np.log(h_bounds[1])), method="bounded",
                          options={"xatol": H_FIT_XATOL})
    h = float(np.exp(res.x))
    return (h, cost) if return_cost else h


#: The grid of the posterior of h (:func:`halo_posterior`, whose docstring says how they are used).
H_POSTERIOR_DCHI2 = 25.0
H_POSTERIOR_CELLS = 12
H_POSTERIOR_MAX_EXTRA = 10
H_POSTERIOR_STEP = 0.1
H_POSTERIOR_GROWTH = 3.0

#: Halo fit tolerance in ln h (a noiseless sky's exact recovery needs it; tests/test_decompose.py).
H_FIT_XATOL = 1e-5


def halo_posterior(cost: _HaloCost, h_bounds, h_best: float) -> tuple[np.ndarray, np.ndarray]:
    """The scale lengths h and their posterior weights: ``exp(-Delta/2)``, ``Delta = (cost - min) / (min / dof)``.

    The cost (chi^2 for ``sersic``, a sum of squares for ``image``) scaled to a reduced chi^2 of 1 at the best fit
    (absorbing the model's mismatch); flat prior in log h.  The h depend on ``h_best`` and the cost alone, not
    on the points the fit tried (those move with rounding): a walk to each side of ``ln h_best`` in steps of
    :data:`H_POSTERIOR_STEP` x 1, 3, 9 ... (:data:`H_POSTERIOR_GROWTH`) to the first h with ``Delta`` >=
    :data:`H_POSTERIOR_DCHI2` or the bound, then up to :data:`H_POSTERIOR_MAX_EXTRA` h in the widest gaps
    (log h) where ``Delta`` < that, until none is wider than 1 / :data:`H_POSTERIOR_CELLS` of the range.  The
    weights (times each h's cell width in log h) sum to 1; the Monte Carlo draws from them.
    """
    lo, hi = np.log(h_bounds[0]), np.log(h_bounds[1])
    points = {}  # h, as the cost memoises it -> ln h

    def add(log_h) -> float:
        cost(log_h)
        points[h := float(np.exp(log_h))] = float(log_h)
        return h

    def delta(h) -> float:  # Delta of one evaluated h, against the points so far
        c_min = np.min([cost.evals[k][0] for k in points])
        return (cost.evals[h][0] - c_min) / (c_min / cost.dof if c_min > 0 else 1.0)

    def state():  # (h, ln h, Delta) of the points so far, in increasing h
        hs = sorted(points)
        return np.array(hs), np.array([points[h] for h in hs]), np.array([delta(h) for h in hs])

    if h_best in cost.evals:  # the fit's best point
        points[h_best] = float(np.log(h_best))
    else:
        add(np.log(h_best))
    (best,) = points.values()
    for side, bound in ((-1.0, lo), (1.0, hi)):
        step = H_POSTERIOR_STEP
        while side * (bound - best) > 1e-9:
            log_h = max(best - step, lo) if side < 0 else min(best + step, hi)
            if delta(add(log_h)) >= H_POSTERIOR_DCHI2 or log_h in (lo, hi):
                break
            step *= H_POSTERIOR_GROWTH
    for _ in range(H_POSTERIOR_MAX_EXTRA):
        hs, lh, d = state()
        inside = np.flatnonzero(d < H_POSTERIOR_DCHI2)
        i0, i1 = max(inside[0] - 1, 0), min(inside[-1] + 1, hs.size - 1)
        # the walk gives gaps of equal width: rounded, a tie goes to the lowest h whatever the rounding of ln h
        gaps = np.round(np.diff(lh[i0:i1 + 1]), 9)
        useful = np.minimum(d[i0:i1], d[i0 + 1:i1 + 1]) < H_POSTERIOR_DCHI2
        if not useful.any():
            break
        k = int(np.argmax(np.where(useful, gaps, -1.0)))
        if gaps[k] <= round((lh[i1] - lh[i0]) / H_POSTERIOR_CELLS, 9):
            break
        add(0.5 * (lh[i0 + k] + lh[i0 + k + 1]))
    hs, lh, d = state()
    edges = np.concatenate([[lh[0]], 0.5 * (lh[1:] + lh[:-1]), [lh[-1]]])
    w = np.exp(-0.5 * d) * np.diff(edges)
    if not w.sum() > 0:  # a single h (the best fit at a bound with nothing inside): all weight on it
        w = np.where(d == d.min(), 1.0, 0.0)
    keep = w > 1e-9 * w.sum()
    return hs[keep], w[keep] / w[keep].sum()


def galaxy_transfer(gid: str, masks: dict, sb, background, sides, positions, line_map, valid, psf_fwhm: float,
                    wcs, kpc_per_arcsec: float, fit_line: str = "HA", noise=None,
                    halo_fit: str = "sersic", posterior: bool = False):
    """Transfer table of one galaxy: ``T[mask, term]`` for the ISM and halo terms of each component.

    Parameters
    ----------
    gid : str
    masks : dict
        ``{extension: bool array}`` (ISM, CGM or ISM_A, CGM_A, ISM_B, CGM_B) on the aligned IFU grid.
    sb, background
        PSF-matched continuum on that grid and its background (:func:`ism_terms`).
    sides : list
        ``[None]`` or the merger's ``[side_a, ~side_a]``.
    positions : list of (str, (ra, dec))
        Component suffixes ('' or A/B) and positions, in the order of ``sides``.
    line_map : ndarray or list of ndarray
        Line map(s) for the halo fit; ``valid``: the spaxels it is fitted on.
    psf_fwhm : float
        IFU PSF FWHM [arcsec].
    wcs : astropy.wcs.WCS
    kpc_per_arcsec : float
    fit_line : str
        Name of the line(s) of ``line_map`` (recorded).
    noise : ndarray or list of ndarray, optional
        Noise maps of ``line_map`` (``sersic``: the chi^2 weights).
    halo_fit : {'sersic', 'image'}
        How h is fitted (:data:`HALO_FITS`).
    posterior : bool
        Also return the transfer tables over the posterior of h (:func:`halo_posterior`).

    Returns
    -------
    DataFrame, or (DataFrame, DataFrame) with ``posterior``
        :data:`TRANSFER_COLUMNS`, one row per mask x term, at the best-fit h; with ``posterior`` also
        :data:`POSTERIOR_COLUMNS`: the same rows at every h of the posterior, with its weight.
    """
    if halo_fit not in HALO_FITS:
        raise ValueError(f"unknown halo fit {halo_fit!r}: use one of {HALO_FITS}")
    shape = np.asarray(sb).shape
    pix = pixscale_arcsec(wcs)
    base = np.nan_to_num(np.asarray(sb, float) - float(background), nan=0.0)
    region = source_region(base, [m for ext, m in masks.items() if ext.startswith("ISM")],
                           int(np.ceil(psf_fwhm / pix)))
    ism = ism_terms(sb, background, sides, region)
    field = pix * max(shape)

    def render(h):
        return [halo_term(shape, wcs, pos, h, psf_fwhm) for _, pos in positions]

    bounds = (0.25 * pix, field)
    if halo_fit == "sersic":
        smooth = sersic_ism_models(ism, wcs, positions, psf_fwhm)
        h, cost = fit_halo_scale(line_map, valid, smooth, render, bounds, noise, nonneg=True, return_cost=True)
    else:
        h, cost = fit_halo_scale(line_map, valid, ism, render, bounds, return_cost=True)
    names = [f"{r}_{s}" if s else r for s, _ in positions for r in TERMS]

    def table(h, halos):
        maps = [m for pair in zip(ism, halos) for m in pair]
        # ISM: its sum over the field; halo: unit flux to infinity (its light beyond the field counts)
        totals = [tot for m in ism for tot in (float(m.sum()), 1.0)]
        t = transfer_matrix(maps, masks, totals)
        rows = []
        for i, ext in enumerate(masks):
            mcomp, mreg = extension_region(gid, ext)
            for k, term in enumerate(names):
                tcomp, treg = extension_region(gid, term)
                rows.append({"id": gid, "mask": ext, "mask_component": mcomp, "mask_region": mreg,
                             "term_component": tcomp, "term": treg, "t": float(t[i, k]), "halo_h_arcsec": h,
                             "halo_h_kpc": h * kpc_per_arcsec, "fit_line": fit_line})
        return pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))

    nominal = table(h, cost.evals[h][1] if h in cost.evals else render(h))  # the fit rendered its best h
    if not posterior:
        return nominal
    hs, weights = halo_posterior(cost, bounds, h)
    grid = pd.concat([table(hk, cost.evals[hk][1]).assign(h_index=k, h_weight=wk)
                      for k, (hk, wk) in enumerate(zip(hs, weights))], ignore_index=True)
    return nominal, grid.loc[:, list(POSTERIOR_COLUMNS)]


def _operator(transfer: pd.DataFrame):
    """``T^-1`` of one galaxy's transfer table with its (component, region) keys; None if not solvable."""
    mask_keys = list(zip(transfer["mask_component"], transfer["mask_region"]))
    term_keys = list(zip(transfer["term_component"], transfer["term"]))
    masks, terms = list(dict.fromkeys(mask_keys)), list(dict.fromkeys(term_keys))
    row, col = {k: i for i, k in enumerate(masks)}, {k: j for j, k in enumerate(terms)}
    t = np.full((len(masks), len(terms)), np.nan)
    for m, k, value in zip(mask_keys, term_keys, transfer["t"].to_numpy(float)):
        t[row[m], col[k]] = value
    return (solve_operator(t) if solvable(t) else None), masks, terms


def halo_percentiles(grid: pd.DataFrame, q=(0.16, 0.5, 0.84)) -> tuple[float, ...]:
    """Percentiles (fractions ``q``) of h in a posterior table (:data:`POSTERIOR_COLUMNS`): the smallest
    grid h whose cumulative weight reaches each."""
    g = grid.drop_duplicates("h_index").sort_values("h_index")
    cdf = np.cumsum(g["h_weight"].to_numpy(float))
    hs = g["halo_h_arcsec"].to_numpy(float)
    return tuple(float(hs[min(int(np.searchsorted(cdf, x)), hs.size - 1)]) for x in q)


def _posterior_operators(grid: pd.DataFrame):
    """``([T^-1 per h], weights)`` of a galaxy's posterior table (:data:`POSTERIOR_COLUMNS`), keys as
    :func:`_operator`; the h whose matrix is not solvable are left out (weights renormalised); None if none is."""
    ops, weights, keys = [], [], None
    index = grid["h_index"].to_numpy()
    for k in np.unique(index):
        block = grid[index == k]
        op, masks, terms = _operator(block)
        if op is None:
            continue
        if keys is not None and keys != (masks, terms):
            raise ValueError(f"{grid['id'].iloc[0]}: the posterior's transfer tables name different masks or terms")
        keys = (masks, terms)
        ops.append(op)
        weights.append(float(block["h_weight"].iloc[0]))
    if not ops or not sum(weights) > 0:
        return None
    return ops, np.asarray(weights) / sum(weights)


#: Key of the draw of the halo scale length per realisation (:func:`halo_draws`; ``ismcgm.seeding``).
HALO_DRAW_KEY = "halo_h"


def halo_draws(weights, seed: int, galaxy: str, realisations) -> np.ndarray:
    """Index into the posterior's h (``weights``, :func:`halo_posterior`) for each realisation index.

    Realisation ``i`` draws one uniform number from the stream ``(seed, 'halo_h', galaxy, i)``
    (:func:`ismcgm.seeding.rng`), so every line, grating and the [C II] of that realisation use the same h,
    whatever the order or batching of the rows.
    """
    cdf = np.cumsum(np.asarray(weights, float))
    u = np.array([rng(seed, HALO_DRAW_KEY, str(galaxy), int(i)).random() for i in realisations])
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), cdf.size - 1)


def posterior_operators(posteriors: dict) -> dict:
    """``{id: ([T^-1 per h], weights) or None}`` of posterior tables (:func:`_posterior_operators`), built once
    for the calls of :func:`decompose_realisations` that share them (the lines and the [C II])."""
    return {gid: _posterior_operators(table) for gid, table in posteriors.items()}


def decompose_realisations(real: pd.DataFrame, transfers: dict, value_columns=("flux", "flux3"),
                           posteriors: dict | None = None, seed: int | None = None,
                           operators: dict | None = None) -> pd.DataFrame:
    """Term fluxes of every realisation: ``T^-1`` applied to the region fluxes of each galaxy, grating, line.

    Parameters
    ----------
    real : DataFrame
        Per-realisation rows with ``id, component, region, grating, line, realisation`` and
        ``value_columns`` (e.g. ``results/mc/<variant>/realisations.parquet`` before the dust columns).
    transfers : dict
        ``{id: transfer table}`` (:func:`galaxy_transfer`).
    value_columns : tuple of str
        Columns transformed (linear in the fluxes); the others are kept from the ISM/CGM mask row of
        the same component.
    posteriors : dict, optional
        ``{id: posterior table}`` (:data:`POSTERIOR_COLUMNS`, ``galaxy_transfer(..., posterior=True)``):
        each realisation then uses the matrix at its own draw of h (:func:`halo_draws`), which carries the
        uncertainty of the halo's scale length into the term fluxes; a galaxy without one (or without a
        solvable matrix in it) uses its best-fit matrix throughout.
    seed : int, optional
        The workflow seed (needed with ``posteriors``).
    operators : dict, optional
        :func:`posterior_operators` of ``posteriors``, where the caller built them already.

    Returns
    -------
    DataFrame
        The same columns, ``region`` now the term (ISM component / halo component).  A galaxy whose
        matrix is not solvable (or missing a region) is left out, with its id in ``attrs['skipped']``.
    """
    if posteriors and seed is None:
        raise ValueError("decompose_realisations: posteriors need the seed of the draws")
    parts, skipped = [], []
    for gid, g in real.groupby("id", sort=False):
        if gid not in transfers:
            skipped.append(gid)
            continue
        op, masks, terms = _operator(transfers[gid])
        if op is None:
            skipped.append(gid)
            continue
        post = None
        if posteriors and gid in posteriors:
            post = operators[gid] if operators is not None else _posterior_operators(posteriors[gid])
        keys = [c for c in ("grating", "line", "realisation") if c in g.columns]
        wide = g.set_index(keys + ["component", "region"])[list(value_columns)].unstack(["component", "region"])
        if post is not None:
            ops, weights = post
            reals = wide.index.get_level_values("realisation").to_numpy()
            uniq, inverse = np.unique(reals, return_inverse=True)
            which = halo_draws(weights, seed, gid, uniq)[inverse]
        out = {}
        for col in value_columns:
            block = wide[col].reindex(columns=pd.MultiIndex.from_tuples(masks))
            if block.isna().all(axis=0).any():
                break
            values = block.to_numpy(float)
            if post is None:
                terms_flux = values @ op.T
            else:
                terms_flux = np.empty((values.shape[0], len(terms)))
                for j in np.unique(which):
                    sel = which == j
                    terms_flux[sel] = values[sel] @ ops[j].T
            out[col] = pd.DataFrame(terms_flux, index=block.index,
                                    columns=pd.MultiIndex.from_tuples(terms, names=["component", "region"]))
        else:
            long = pd.concat({c: v.stack(["component", "region"], future_stack=True) for c, v in out.items()},
                             axis=1).reset_index()
            rest = g.drop(columns=list(value_columns))
            long = long.merge(rest, on=keys + ["component", "region"], how="left")
            parts.append(long.loc[:, list(g.columns)])
            continue
        skipped.append(gid)
    df = pd.concat(parts, ignore_index=True) if parts else real.iloc[:0].copy()
    df.attrs["skipped"] = skipped
    return df


def decompose_cii(cii_rows: pd.DataFrame, cii_real: pd.DataFrame, transfers: dict, detect_snr: float,
                  posteriors: dict | None = None, seed: int | None = None, operators: dict | None = None):
    """[C II] of each term at the IFU resolution: ``T^-1`` on the spill-corrected (native) region fluxes.

    Returns the [C II] rows (line-fluxes format, ``flux_native`` etc. replaced by the term values;
    median, standard deviation and detection from the decomposed realisations, as
    :func:`ismcgm.mc.summarise`) and the decomposed realisations (``cii.realisation_table`` columns).
    ``posteriors``, ``seed``, ``operators``: as for :func:`decompose_realisations` (realisation ``i`` of [C II]
    uses the h that realisation ``i`` of the IFU lines uses).
    """
    real = decompose_realisations(cii_real.assign(grating="alma", line="CII"), transfers,
                                  value_columns=("flux", "flux_native"), posteriors=posteriors, seed=seed,
                                  operators=operators)
    rows = []
    for (gid, comp, region), g in real.groupby(["id", "component", "region"], sort=False):
        s = mc.summarise(g["flux_native"].to_numpy(float), detect_snr)
        base = cii_rows[(cii_rows["id"] == gid) & (cii_rows["component"] == comp)].iloc[0].to_dict()
        base.update({"region": region, "flux": s.flux, "flux_err": s.err, "snr": s.snr, "detected": bool(s.detected),
                     "upper_limit": s.upper_limit, "flux_dustcorr": s.flux, "flux_dustcorr_err": s.err,
                     "flux_native": s.flux, "flux_native_err": s.err, "upper_limit_native": s.upper_limit})
        rows.append(base)
    table = pd.DataFrame(rows, columns=cii_rows.columns)
    return table, real.drop(columns=["grating", "line"])


def transfer_inputs(image, cube, aligned, masks_path, row):
    """The masks, the PSF-matched continuum on the aligned reference grid and its background, as the ISM mask
    is made (background: the sigma-clipped median of :func:`ismcgm.imaging.image_noise`): the first three
    arguments of :func:`transfer_from_masks`."""
    masks, _, _ = read_masks(masks_path)
    matched = psf_match(image, row["image_psf_fwhm"], row["ifu_psf_fwhm"])
    background, _ = image_noise(matched)
    sb = reproject_sb(matched, image.wcs, aligned.celestial, cube.sci.shape[1:])
    return masks, sb, background


def transfer_from_inputs(image, cube, aligned, masks_path, row, halo_fit: str = "sersic") -> pd.DataFrame:
    """:func:`galaxy_transfer` from a galaxy's continuum image, reference cube, aligned WCS and mask file
    (:func:`transfer_inputs`, then :func:`transfer_from_masks`)."""
    return transfer_from_masks(*transfer_inputs(image, cube, aligned, masks_path, row), cube, aligned, row, halo_fit)


def transfer_from_masks(masks: dict, sb, background: float, cube, aligned, row,
                        halo_fit: str = "sersic", posterior: bool = False):
    """:func:`galaxy_transfer` from masks on the aligned reference grid and the PSF-matched continuum there.

    ``masks``, ``sb`` and ``background`` are what :func:`ismcgm.masks.make_masks` returns as
    ``regions``, ``ism_sb`` and ``background`` (the extraction job passes them on instead of redoing the
    PSF matching and the reprojection).  The halo is fitted (:data:`HALO_FITS`) over the reference cube's
    valid spaxels to the maps of :data:`HALO_FIT_LINES` it covers with their noise (``sersic``), or to its
    Ha map, [O III]5007 where Ha is not covered (``image``).  ``posterior``: also the tables over the
    posterior of h (:func:`galaxy_transfer`).
    """
    gid = row["id"]
    z = float(row["z"])
    w = aligned.celestial
    shape = cube.sci.shape[1:]
    positions = _positions(row)
    sides = [None] if len(positions) == 1 else [(a := _bisector_side_a(w, shape, positions[0][1], positions[1][1])), ~a]
    maps, noises, names = [], [], []
    for line in HALO_FIT_LINES if halo_fit == "sersic" else ("HA", "OIII5007"):
        try:
            signal, noise = line_snr_maps(cube, z, line) if halo_fit == "sersic" else (line_map(cube, z, line), None)
        except InputError:
            continue
        maps.append(signal)
        noises.append(noise)
        names.append(line)
        if halo_fit != "sersic":
            break
    if not maps:
        raise InputError(gid, cube.path, "neither Ha nor [O III]5007 is covered for the halo fit of the decomposition",
                         "give a reference cube that covers Ha or [O III]5007")
    return galaxy_transfer(gid, masks, sb, background, sides, positions, maps, cube.valid_spaxels,
                           float(row["ifu_psf_fwhm"]), w, proper_kpc_per_arcsec(z), "+".join(names),
                           noises if halo_fit == "sersic" else None, halo_fit, posterior)


def intrinsic_ratios(realisations, transfers: dict, samples, detect_snr: float, intrinsic_ha_hb: float,
                     overlap_mode: str = "red", cii_rows=None, cii_real=None, posteriors: dict | None = None,
                     seed: int | None = None):
    """Line fluxes and ratios of the ISM and halo terms, through the same dust and ratio code as the regions.

    Parameters
    ----------
    realisations : DataFrame
        ``results/mc/<variant>/realisations.parquet`` (its dust columns are recomputed per term).
    transfers : dict
        ``{id: transfer table}`` (:func:`galaxy_transfer`).
    samples : DataFrame
        ``id, logmstar, merger``.
    detect_snr, intrinsic_ha_hb, overlap_mode
        As for :func:`ismcgm.linefluxes.gather`.
    cii_rows, cii_real : DataFrame, optional
        The [C II] tables of the regions (``results/cii/<variant>/<id>.csv`` and
        ``<id>_realisations.parquet``, concatenated).
    posteriors, seed : optional
        ``{id: posterior table}`` and the workflow seed: each realisation uses the transfer matrix at its
        own draw of the halo's scale length (:func:`decompose_realisations`).

    Returns
    -------
    line_fluxes : DataFrame
        :data:`ismcgm.linefluxes.LINE_FLUX_COLUMNS` of the terms (``region`` = term).
    ratios : DataFrame
        :data:`ismcgm.ratios.RATIO_COLUMNS` of the terms, as ``ratios.csv``.
    skipped : list of str
        Galaxies whose transfer matrix could not be inverted (left out, see :func:`decompose_realisations`).
    stacked : DataFrame
        The sample-level stacked shifts of the terms (:func:`ismcgm.stacking.stacked_shifts`).
    """
    chunks = realisations.drop(columns=["ebv", "flux_dustcorr"], errors="ignore")
    operators = posterior_operators(posteriors) if posteriors else None
    terms = decompose_realisations(chunks, transfers, posteriors=posteriors, seed=seed, operators=operators)
    table, real, _ = linefluxes.gather(terms, detect_snr, intrinsic_ha_hb, overlap_mode)
    tables, cii_terms = [table], None
    if cii_rows is not None and len(cii_rows):
        cii_table, cii_terms = decompose_cii(cii_rows, cii_real, transfers, detect_snr, posteriors, seed, operators)
        tables.append(cii_mod.native_resolution(cii_table))
    fluxes = rat.preferred_grating(pd.concat(tables, ignore_index=True))
    real = rat.realisation_fluxes(real, cii_terms)
    out = rat.compute_ratios(fluxes, samples, realisations=real)
    stacked = stacking.stacked_shifts(fluxes, real, detect_snr=detect_snr, intrinsic_ha_hb=intrinsic_ha_hb)
    return table, out, list(terms.attrs.get("skipped", [])), stacked
