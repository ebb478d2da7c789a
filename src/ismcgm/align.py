"""Astrometric alignment of the IFU cubes to the image (SPEC section 1, paper Sect. 2.2).

Alignment (:func:`align`)
-------------------------
:func:`align` takes one cube or, better, *all* cubes of a galaxy (G235M and
G395M/H): the shift is common to the gratings (they share the pointing), so
it is fitted jointly to every cube.  Each cube is collapsed to a continuum
image (:func:`collapse_continuum`) from its *line-free* channels (channels
within ``line_mask_kms`` of any known emission line at the galaxy redshift
are dropped) as an *inverse-variance weighted mean*: one weight per channel,
``1 / median_spaxels(ERR^2)`` (a weight that is the same for every spaxel
keeps the morphology of the continuum, while the noisy grating edges get
little weight), after clipping voxels more than 5 ERR from the running
median of their spectrum (cosmic-ray residuals, lines missing from the line
list).

*Channel choice: every line-free channel of every cube, not only those in
the image filter band* (``channels='all'``, the default of :func:`align`;
``channels='band'`` restricts to the filter band, SPEC 1's literal reading).
The in-band continuum of a faint galaxy has too little S/N (the numbers
measured on the mock are in the README, "Measured on the mock").  The price
is a colour-gradient term: the continuum morphology over 1.7-5 um, not in
the filter band alone, is matched to the image (the mock has no colour
gradients, so it cannot measure this term).  F125W (HST) lies blue-ward of every grating and always uses the
whole line-free continuum.

The image is PSF-matched to the IFU (Gaussian kernel of FWHM
``sqrt(ifu_psf^2 - image_psf^2)``) and interpolated (bilinear, as
``reproject_interp``) onto each cube's grid *with a trial shift* applied to
the IFU WCS.  The shift minimises ``sum_k chi2_k`` of ``a_k * image(shift) + b_k`` against the
collapsed cube ``k`` (own scale and offset per cube, weighted by the noise
of the collapse), started from the S/N-weighted difference of
iterated-aperture centroids, screened on a coarse grid of trial shifts
(steps of half the IFU PSF FWHM within ``search_arcsec``; guards against a
first guess pulled to the wrong clump or merger component) and refined with
Nelder-Mead.  The continuum detection must reach ``min_snr`` (the fitted
scales' S/N, Stouffer-combined over the cubes), otherwise an
:class:`~ismcgm.io.InputError` is raised.  A formal 1-sigma of the shift
(chi2 curvature) is logged.  The *residual* is an independent
re-measurement: the S/N^2-weighted mean over the cubes of the offset between
the iterated-aperture centroids (radius ``centroid_radius_arcsec``, for a
merger counted from the farthest component) of the collapsed cube and of
the PSF-matched image on the aligned grid.

The shift is what is *added* to the IFU sky position: ``shifted_wcs(wcs,
dra, ddec)`` moves CRVAL by ``dra`` arcsec on the sky to the east (RA grows by
``dra / cos(dec)``) and ``ddec`` arcsec to the north.  For an IFU WCS that
is wrong by ``e`` (header position minus true position) the fitted shift is
``-e``.
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import numpy as np
from astropy.wcs import WCS
from scipy import ndimage, optimize

from . import instrument as ins
from .extract import _same_grid
from .imaging import psf_match
from .io import Cube, Image, InputError, parse_components, reference_grating
from .samples import galaxy_gratings
from .wcsutil import _pix_offset_arcsec, pixscale_arcsec, shifted_wcs

log = logging.getLogger(__name__)


#: Filter bands [micron] used to collapse the cube for the alignment.
FILTER_BANDS_UM = {"F277W": (2.42, 3.13), "F444W": (3.88, 4.99), "F125W": (1.10, 1.40)}


def _line_free(wave_um: np.ndarray, z: float, line_mask_kms: float) -> np.ndarray:
    ok = np.ones(wave_um.shape, bool)
    for lam in ins.TRANSITIONS.values():
        lo = lam * (1 + z) * 1e-4
        ok &= np.abs(wave_um / lo - 1.0) * ins.C_KMS > line_mask_kms
    return ok


def collapse_continuum(cube: Cube, image_filter: str, z: float, line_mask_kms: float = 1500.0,
                       min_channels: int = 20, *, channels: str = "band", weighting: str = "ivar",
                       clip_sigma: float = 5.0, block: int = 48):
    """Collapse the cube's line-free continuum channels into one image.

    Parameters
    ----------
    cube : ismcgm.io.Cube
    image_filter : str
        ``F277W``, ``F444W`` or ``F125W``.
    z : float
        Redshift (for the line mask).
    line_mask_kms : float
        Channels within this velocity of any known transition are dropped.
    min_channels : int
        With ``channels='band'``: when fewer line-free channels than this fall
        in the filter band (F125W: none) the whole line-free continuum of the
        cube is used.
    channels : {'band', 'all'}
        ``'band'``: line-free channels inside the filter band (SPEC 1);
        ``'all'``: every line-free channel of the cube.
    weighting : {'ivar', 'median'}
        ``'ivar'``: inverse-variance weighted mean with one weight per
        channel, ``1 / median_spaxels(ERR^2)`` (a weight that does not vary
        across the field keeps the morphology of the continuum, while the
        noisy grating edges get little weight), after clipping voxels that
        deviate by more than ``clip_sigma`` x ERR from the running median of
        their spaxel's spectrum (blocks of ``block`` channels): cosmic-ray
        residuals and emission lines missing from the line list.
        ``'median'``: per-spaxel median (noise 1.2533 x that of the mean).

    Returns
    -------
    image : ndarray (ny, nx)
        Continuum [MJy/sr] per spaxel (NaN where no valid channel).
    sigma : ndarray (ny, nx)
        1-sigma of ``image``.
    used : ndarray of bool (n_wave,)
        Channels used.
    """
    if channels not in ("band", "all"):
        raise ValueError(f"channels must be 'band' or 'all', not {channels!r}")
    if weighting not in ("ivar", "median"):
        raise ValueError(f"weighting must be 'ivar' or 'median', not {weighting!r}")
    band = FILTER_BANDS_UM.get(str(image_filter).upper())
    free = _line_free(cube.wave_um, z, line_mask_kms)
    used = free.copy()
    if band is not None and channels == "band":
        used &= (cube.wave_um >= band[0]) & (cube.wave_um <= band[1])
    if used.sum() < min_channels:
        used = free
    if used.sum() < min_channels:
        used = np.ones_like(free)
    sub = cube.sci[used]
    err = cube.err[used]
    good = np.isfinite(sub) & np.isfinite(err) & (err > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if weighting == "median":
            img = np.nanmedian(np.where(good, sub, np.nan), axis=0)
            n = good.sum(axis=0)
            sig = 1.2533 * np.sqrt((np.where(good, err, 0.0) ** 2).sum(axis=0)) / np.maximum(n, 1)
            img[n == 0] = np.nan
            sig[n == 0] = np.nan
            return img, sig, used
        if clip_sigma and clip_sigma > 0:
            ref = _running_block_median(np.where(good, sub, np.nan), block)
            good &= ~(np.abs(sub - ref) > clip_sigma * err)
        var_ch = np.nanmedian(np.where(good, err, np.nan) ** 2, axis=(1, 2))
        w_ch = np.where(np.isfinite(var_ch) & (var_ch > 0), 1.0 / var_ch, 0.0)
        w = np.where(good, w_ch[:, None, None], 0.0)
        wsum = w.sum(axis=0)
        img = (w * np.where(good, sub, 0.0)).sum(axis=0) / wsum
        sig = np.sqrt((w**2 * np.where(good, err, 0.0) ** 2).sum(axis=0)) / wsum
    bad = ~(wsum > 0)
    img[bad] = np.nan
    sig[bad] = np.nan
    return img, sig, used


def _running_block_median(sub: np.ndarray, block: int) -> np.ndarray:
    """Per-spaxel median of blocks of ``block`` channels, expanded back to every channel.

    A coarse continuum model along the spectral axis (NaN-aware) that
    follows a continuum slope but not a narrow line or a cosmic ray.
    """
    n = sub.shape[0]
    nb = max(1, int(np.ceil(n / block)))
    edges = np.linspace(0, n, nb + 1).astype(int)
    out = np.empty_like(sub)
    for a, b in zip(edges[:-1], edges[1:]):
        out[a:b] = np.nanmedian(sub[a:b], axis=0)[None]
    return out


def _centroid(img: np.ndarray, x0: float, y0: float, radius_pix: float, niter: int = 20):
    """Iterated flux-weighted centroid within a circular aperture (pixel units)."""
    yy, xx = np.indices(img.shape)
    good = np.isfinite(img)
    for _ in range(niter):
        ap = good & ((xx - x0) ** 2 + (yy - y0) ** 2 <= radius_pix**2)
        w = np.where(ap, np.clip(img, 0, None), 0.0)
        tot = w.sum()
        if not np.isfinite(tot) or tot <= 0:
            return np.nan, np.nan
        x1, y1 = (w * xx).sum() / tot, (w * yy).sum() / tot
        done = np.hypot(x1 - x0, y1 - y0) < 1e-4
        x0, y0 = x1, y1
        if done:
            break
    return x0, y0


# --------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------
class Alignment(NamedTuple):
    """Result of :func:`align` (unpacks as ``dra, ddec, residual``)."""

    shift_ra_arcsec: float
    shift_dec_arcsec: float
    residual_arcsec: float


def alignment_grating(row) -> str:
    """Grating of a galaxy whose coverage overlaps the image filter band most.

    F125W overlaps no grating: the reference grating is returned.
    """
    band = FILTER_BANDS_UM.get(str(row["image_filter"]).upper())
    best, best_ov = reference_grating(row), 0.0
    if band is None:
        return best
    for g in galaxy_gratings(row):
        gr = ins.get_grating(g)
        ov = min(band[1], gr.wmax_um) - max(band[0], gr.wmin_um)
        if ov > best_ov + 1e-9:
            best, best_ov = g, ov
    return best


def _sample_bilinear(data: np.ndarray, wcs_in: WCS, wcs_out: WCS, shape_out):
    """Bilinear interpolation of ``data`` at the pixel centres of another grid.

    The same result as ``reproject_interp(..., order='bilinear')`` (NaN and
    zero footprint outside the input), computed directly with the low-level
    WCS transforms: it is called hundreds of times by the alignment fit.
    """
    ny, nx = shape_out
    yy, xx = np.indices((ny, nx), dtype=float)
    wi, wo = wcs_in.celestial, wcs_out.celestial
    ra, dec = wo.all_pix2world(xx.ravel(), yy.ravel(), 0)
    x, y = wi.all_world2pix(ra, dec, 0)
    h, w = data.shape
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    vals = ndimage.map_coordinates(np.asarray(data, float), [np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)],
                                   order=1, mode="nearest", prefilter=False)
    out = np.where(inside, vals, np.nan).reshape(ny, nx)
    return out, inside.reshape(ny, nx).astype(float)


def _as_cube_list(cube_or_cubes) -> list:
    """``[cube]`` for one cube (anything with ``sci``), else the list of cubes."""
    if isinstance(cube_or_cubes, Cube) or hasattr(cube_or_cubes, "sci"):
        return [cube_or_cubes]
    cubes = list(cube_or_cubes)
    if not cubes or not all(hasattr(c, "sci") for c in cubes):
        raise TypeError("align() needs a Cube or a non-empty list of Cubes")
    return cubes


def _aperture_snr2(img, sig, x0, y0, radius_pix) -> float:
    """(S/N)^2 of the positive flux inside a circular aperture (weight of a centroid)."""
    yy, xx = np.indices(img.shape)
    ap = np.isfinite(img) & np.isfinite(sig) & ((xx - x0) ** 2 + (yy - y0) ** 2 <= radius_pix**2)
    if not ap.any():
        return 0.0
    f, v = img[ap].sum(), (sig[ap] ** 2).sum()
    return float(max(f, 0.0) ** 2 / v) if v > 0 else 0.0


def _align_radius_arcsec(row, centroid_radius_arcsec: float) -> float:
    """Centroid aperture radius: ``centroid_radius_arcsec`` beyond the farthest merger component."""
    if not bool(row.get("merger", False)):
        return float(centroid_radius_arcsec)
    try:
        comps = parse_components(row.get("components", ""))
    except ValueError:
        comps = []
    ra0, dec0 = float(row["ra"]), float(row["dec"])
    cosd = np.cos(np.deg2rad(dec0))
    far = max([np.hypot((ra - ra0) * cosd, dec - dec0) * 3600.0 for ra, dec in comps] or [0.0])
    return float(centroid_radius_arcsec) + float(far)


def align(cube_or_cubes, image: Image, row, *, line_mask_kms: float = 1500.0, search_arcsec: float = 0.5,
          centroid_radius_arcsec: float = 0.3, channels: str = "all", weighting: str = "ivar",
          clip_sigma: float = 5.0, min_snr: float = 5.0, return_details: bool = False):
    """Measure the astrometric shift of the IFU cube(s) onto the continuum image.

    Parameters
    ----------
    cube_or_cubes : ismcgm.io.Cube or list of Cube
        The galaxy's cube, or better *all* its cubes (both gratings): they
        share the pointing, so one shift is fitted to all of them jointly
        (each cube with its own continuum scale and offset, on its own grid).
    image : ismcgm.io.Image
        Continuum image with a correct WCS.
    row : mapping
        Sample row: ``id``, ``z``, ``ra``, ``dec``, ``image_filter``,
        ``image_psf_fwhm``, ``ifu_psf_fwhm`` (``merger``, ``components``).
    line_mask_kms : float
        Half-width of the channels dropped around each emission line.
    search_arcsec : float
        Largest shift accepted (the fit is bounded to this radius).
    centroid_radius_arcsec : float
        Aperture radius of the centroids (first guess and residual); for a
        merger it is counted from the farthest component.
    channels, weighting, clip_sigma
        How each cube is collapsed (:func:`collapse_continuum`).  Default:
        every line-free channel, inverse-variance weighted, 5-sigma clipped.
    min_snr : float
        Smallest significance of the continuum detection (the fitted image
        scales, combined over the cubes) accepted.
    return_details : bool
        Also return a dict with the collapsed cube(s), the model(s) and the fit.

    Returns
    -------
    Alignment
        ``(shift_ra_arcsec, shift_dec_arcsec, residual_arcsec)``: the shift
        to *add* to the IFU sky position (east, north; arcsec on the sky) and
        the re-measured centroid offset after applying it.

    Raises
    ------
    InputError
        The image does not overlap the cube(s), or there is no continuum signal.
    """
    cubes = _as_cube_list(cube_or_cubes)
    gid = row["id"]
    z = float(row["z"])
    paths = ", ".join(str(c.path) for c in cubes)
    matched = psf_match(image, row["image_psf_fwhm"], row["ifu_psf_fwhm"])

    # one entry per cube; cubes on the same grid share the reprojected model
    entries, grids = [], []
    for cube in cubes:
        coll, sig, used = collapse_continuum(cube, row["image_filter"], z, line_mask_kms, channels=channels,
                                             weighting=weighting, clip_sigma=clip_sigma)
        w0 = cube.wcs.celestial
        shape = coll.shape
        good0 = np.isfinite(coll) & np.isfinite(sig) & (sig > 0)
        gi = next((i for i, (w, s) in enumerate(grids) if s == shape and _same_grid(w, w0, shape)), None)
        if gi is None:
            grids.append((w0, shape))
            gi = len(grids) - 1
        entries.append({"cube": cube, "coll": coll, "sig": sig, "used": used, "grid": gi, "good0": good0})
    for e in entries:
        _, foot = _sample_bilinear(matched, image.wcs, *grids[e["grid"]])
        e["overlap"] = bool(np.any(e["good0"] & (foot > 0)))
    if not any(e["overlap"] for e in entries):
        raise InputError(gid, image.path, f"image does not overlap the IFU cube {paths}",
                         "check the image/cube paths and their WCS")
    for e in entries:
        if not e["overlap"]:  # the gratings share the pointing: a cube off the image is another field's
            raise InputError(gid, e["cube"].path, f"cube does not overlap the image {image.path} (the other "
                             "cube(s) do)", "give this galaxy's cube (the gratings share the pointing)")
    entries = [e for e in entries if e["overlap"]]
    w_ref = grids[entries[0]["grid"]][0]
    ps = pixscale_arcsec(w_ref)

    def models_for(shift):
        out = {}
        for gi in {e["grid"] for e in entries}:
            w, shape = grids[gi]
            out[gi] = _sample_bilinear(matched, image.wcs, shifted_wcs(w, shift[0], shift[1]), shape)
        return out

    def solve(shift):
        """chi2 of a_k * model(shift) + b_k against every collapsed cube k (common shift)."""
        models = models_for(shift)
        chi2, coefs = 0.0, []
        for e in entries:
            m, f = models[e["grid"]]
            ok = e["good0"] & np.isfinite(m) & (f > 0)
            if ok.sum() < 10:
                return np.inf, None
            wgt = 1.0 / e["sig"][ok]
            A = np.vstack([m[ok] * wgt, wgt]).T
            coef, *_ = np.linalg.lstsq(A, e["coll"][ok] * wgt, rcond=None)
            res = e["coll"][ok] * wgt - A @ coef
            # a shift that pushes the image off the grid must not win: penalise lost spaxels
            chi2 += float(res @ res) + float((e["good0"] & ~ok).sum()) * 1e3
            try:
                cov = np.linalg.inv(A.T @ A)
                coef_err = np.sqrt(np.diag(cov))
            except np.linalg.LinAlgError:
                coef_err = np.array([np.inf, np.inf])
            coefs.append((coef, coef_err))
        return chi2, coefs

    def centroid_offset(shift, models):
        """S/N^2-weighted mean over the cubes of the (east, north) offset [arcsec] cube - model centroid."""
        offs, wts = [], []
        for e in entries:
            w, _ = grids[e["grid"]]
            ws = shifted_wcs(w, shift[0], shift[1])
            m, f = models[e["grid"]]
            gx, gy = ws.world_to_pixel_values(float(row["ra"]), float(row["dec"]))
            mx, my = _centroid(np.where(f > 0, m, np.nan), gx, gy, r_pix)
            kx, ky = _centroid(np.where(e["good0"], e["coll"], np.nan), mx, my, r_pix)
            if not np.isfinite(mx + my + kx + ky):
                continue
            s2 = _aperture_snr2(e["coll"], e["sig"], kx, ky, r_pix)
            if s2 <= 0:
                continue
            offs.append(_pix_offset_arcsec(ws, kx - mx, ky - my))
            wts.append(s2)
        if not wts:
            return None
        wts = np.asarray(wts)
        return np.average(np.asarray(offs), axis=0, weights=wts)

    r_pix = _align_radius_arcsec(row, centroid_radius_arcsec) / ps

    # first guess: centroids near the galaxy position.  The model sits at its
    # centroid for zero shift, the cube light at its own; shifting the WCS by s
    # moves the model by -s on the pixel grid, i.e. s = -(cube - model) offset.
    o = centroid_offset(np.zeros(2), models_for(np.zeros(2)))
    g = -np.asarray(o) if o is not None else np.zeros(2)
    if not np.all(np.isfinite(g)) or np.hypot(*g) > search_arcsec:
        g = np.zeros(2)

    def cost(s):
        if np.hypot(*s) > search_arcsec:
            return 1e30
        return solve(s)[0]

    # coarse grid (steps of half the IFU PSF) guards against a centroid guess
    # pulled to the wrong component or clump; start from the best point
    step = 0.5 * float(row["ifu_psf_fwhm"])
    nstep = int(np.floor(search_arcsec / step))
    trial = [g] + [np.array([i * step, j * step]) for i in range(-nstep, nstep + 1) for j in range(-nstep, nstep + 1)
                   if np.hypot(i, j) * step <= search_arcsec]
    g = min(trial, key=cost)

    best = optimize.minimize(cost, g, method="Nelder-Mead",
                             options={"xatol": 1e-4, "fatol": 1e-6, "initial_simplex": [g, g + [0.03, 0], g + [0, 0.03]]})
    shift = best.x
    chi2, coefs = solve(shift)
    zs = np.array([c[0][0] / c[1][0] for c in coefs]) if coefs else np.array([])
    snr = float(zs.sum() / np.sqrt(zs.size)) if zs.size else np.nan  # Stouffer combination
    if coefs is None or not np.isfinite(chi2) or not np.isfinite(snr) or snr < min_snr:
        raise InputError(gid, entries[0]["cube"].path if len(entries) == 1 else paths,
                         f"no continuum signal matching the image for the astrometric alignment "
                         f"(S/N {snr:.1f} < {min_snr:g})",
                         "check that the image and cube show the same galaxy (positions, WCS)")

    # formal 1-sigma of the shift from the curvature of chi2 (Delta chi2 = 1)
    shift_err = _shift_uncertainty(cost, shift, h=0.01)

    # independent re-measurement on the aligned grid(s)
    models1 = models_for(shift)
    o1 = centroid_offset(shift, models1)
    residual = float(np.hypot(*o1)) if o1 is not None else np.nan

    result = Alignment(float(shift[0]), float(shift[1]), residual)
    log.info("%s: alignment shift (%.4f, %.4f)\" (formal 1-sigma %.4f, %.4f) residual %.4f\"; continuum "
             "detection S/N %.1f (Stouffer over cubes) from %s channels of %d cube(s)", gid,
             result.shift_ra_arcsec, result.shift_dec_arcsec, shift_err[0], shift_err[1], residual, snr,
             "+".join(str(int(e["used"].sum())) for e in entries), len(entries))
    if return_details:
        e0, c0 = entries[0], coefs[0][0]
        m0 = models1[e0["grid"]][0]
        details = {"collapsed": e0["coll"], "sigma": e0["sig"], "model": m0 * c0[0] + c0[1], "channels": e0["used"],
                   "start": tuple(g), "chi2": chi2, "scale": c0[0], "offset": c0[1],
                   "shift_err_arcsec": tuple(shift_err), "snr": snr, "snr_per_cube": zs.tolist(),
                   "cubes": [{"path": e["cube"].path, "collapsed": e["coll"], "sigma": e["sig"],
                              "channels": e["used"], "model": models1[e["grid"]][0] * c[0][0] + c[0][1],
                              "scale": c[0][0], "offset": c[0][1]} for e, c in zip(entries, coefs)]}
        return result, details
    return result


def _shift_uncertainty(cost, x, h: float = 0.01):
    """1-sigma errors of a 2-parameter chi2 minimum from a finite-difference Hessian."""
    x = np.asarray(x, float)
    f0 = cost(x)
    H = np.zeros((2, 2))
    e = np.eye(2) * h
    try:
        for i in range(2):
            H[i, i] = (cost(x + e[i]) - 2 * f0 + cost(x - e[i])) / h**2
        H[0, 1] = H[1, 0] = (cost(x + e[0] + e[1]) - cost(x + e[0] - e[1]) - cost(x - e[0] + e[1])
                             + cost(x - e[0] - e[1])) / (4 * h**2)
        cov = 2.0 * np.linalg.inv(H)
        d = np.diag(cov)
        return np.sqrt(d) if np.all(d > 0) else np.array([np.nan, np.nan])
    except (np.linalg.LinAlgError, FloatingPointError):
        return np.array([np.nan, np.nan])
