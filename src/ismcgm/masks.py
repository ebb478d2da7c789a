"""Astrometric alignment, ISM and CGM masks (SPEC sections 1-3, paper Sect. 2.2, 3.1).

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
On the mock survey (SPEC 14) the in-band continuum of a faint galaxy has too
little S/N: with the original in-band median of one cube (and the mock's
earlier cube noise, 2.4x today's) the F444W merger mock01 (G395M, where the
continuum is faintest in MJy/sr and the noise highest) was off by 0.066" and
the F277W galaxy mock11 (band at the noisy G235M red edge) by 0.046"; in
band, both gratings, inverse-variance weighted still left 0.026" for mock11.
All line-free channels of both gratings recover every one of the 18
default-mock shifts to < 0.006" at either noise level (median 0.002"), and
to < 0.023" with 10x today's cube noise.  The price is a colour-gradient
term: the continuum morphology over 1.7-5 um, not in the filter band alone,
is matched to the image; for the 0.03" target this is far smaller than the
noise it removes (the mock has no colour gradients, so it cannot measure
this term).  F125W (HST) lies blue-ward of every grating and always uses the
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

Masks (:func:`make_masks`)
--------------------------
*Regridding choice: flux-conserving reprojection of the image, then
threshold* (SPEC 2.3, first option).  The noise is measured on the
PSF-matched image on its own pixel grid (sigma-clipped standard deviation
with the sources masked and dilated, :func:`image_noise`) and the threshold
is the surface brightness ``median + ism_nsigma * noise`` [MJy/sr], i.e. the
``ism_nsigma`` isophote of the image.  The PSF-matched image is reprojected
onto the aligned IFU grid with ``reproject_exact`` (each spaxel: the
area-weighted mean surface brightness over the spaxel, :func:`reproject_sb`)
and thresholded at that level; the connected region(s) (8-connected)
containing the galaxy position (mergers: each component position) form the
ISM (:func:`ism_ifu_mask`).  Averaging over the spaxel makes the boundary
less noisy than sampling one image pixel at the spaxel centre (the former
nearest-pixel footprint): in a Monte Carlo of the 22 mock galaxies
(default + test config, 8 noise draws each) the IFU-grid ISM agrees with
the noiseless truth's footprint to a median IoU of 0.96 with IoU < 0.9 in 8%
of the draws, against 16% for the nearest-pixel footprint; the remaining
disagreements are spaxels whose true mean surface brightness lies within
~1 noise sigma of the threshold.  The image-grid footprint is still computed
(``ism_image``, it checks that the ISM is not empty at the threshold) and
is used, with a warning, only when no spaxel's mean reaches the threshold
(a source smaller than a spaxel).

CGM: ``binary_dilation`` of the IFU-grid ISM (3x3 structure,
``dilation_iterations``), then ``astropy.convolution.convolve`` with a
``Tophat2DKernel`` of radius ``tophat_diameter_arcsec / 2 / pixscale``,
keeping every spaxel above half the smallest non-zero kernel value (i.e.
every spaxel the top-hat reaches, robust to rounding), minus the ISM.  The
paper's robustness variants replace that outer boundary by one from [C II]
(``cgm_outer: 4r_cii`` -- a circle of 4 beam-deconvolved [C II] half-light
radii -- or ``cii_3sigma`` -- the [C II] moment-0 3-sigma contour;
:func:`cii_outer_boundary`).  Both
ISM and CGM then lose the cube's invalid (all-NaN) spaxels and the
``exclude_region`` (SPEC 0: "drop from all masks").  Mergers are split by
the perpendicular bisector of the two component positions (side A is the
side of the first component; spaxels exactly on the bisector go to A).

Circularised radius (:func:`region_stats`): ``r_cgm_kpc = sqrt(A_outer /
pi)`` with ``A_outer`` the area inside the *outer* CGM boundary, i.e. ISM +
CGM of the same component (the CGM annulus alone would give a radius with
no geometric meaning).  This is the "CGM out to r ~ 10 kpc" of the paper
and the r range of the Fig. 5/7 boxes.  For merger halves the same formula
is applied to the half (ISM_A + CGM_A).  ``r_kpc`` is each region's own
``sqrt(area / pi)`` (for the ISM: the circularised ISM radius).
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.convolution import Gaussian2DKernel, Tophat2DKernel, convolve, convolve_fft
from astropy.cosmology import FlatLambdaCDM
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS, WCSHDO_P17, WCSHDO_safe
from astropy.wcs.utils import proj_plane_pixel_scales
from reproject import reproject_interp
from scipy import ndimage, optimize

from . import instrument as ins
from .io import Cube, Image, InputError, atomic_path, parse_components, reference_grating

log = logging.getLogger(__name__)

#: Cosmology of the project (SPEC section 0).
COSMO = FlatLambdaCDM(H0=70.0, Om0=0.3)

#: Filter bands [micron] used to collapse the cube for the alignment.
FILTER_BANDS_UM = {"F277W": (2.42, 3.13), "F444W": (3.88, 4.99), "F125W": (1.10, 1.40)}

#: Default mask definition (the paper's; SPEC sections 2-3).
DEFAULT_PARAMS = {
    "name": "default",
    "ism_nsigma": 9.0,
    "dilation_iterations": 1,
    "tophat_diameter_arcsec": 0.5,
    "cgm_outer": "tophat",
    "cii_radius_factor": 4.0,
    "cii_nsigma": 3.0,
    "cii_window_kms": 300.0,
}

#: Outer CGM boundaries: the top-hat expansion of the ISM (the paper's) and
#: the two [C II] robustness variants, which need the galaxy's ALMA cube.
CGM_OUTER = ("tophat", "4r_cii", "cii_3sigma")

#: Short FITS keywords of the variant parameters.
PARAM_KEYS = {
    "name": "VARIANT",
    "ism_nsigma": "ISMNSIG",
    "dilation_iterations": "DILITER",
    "tophat_diameter_arcsec": "TOPHATD",
    "cgm_outer": "CGMOUTER",
    "cii_radius_factor": "CIIRFAC",
    "cii_nsigma": "CIINSIG",
    "cii_window_kms": "CIIWIN",
}

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_STRUCT8 = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def pixscale_arcsec(wcs: WCS) -> float:
    """Mean pixel scale [arcsec] of a celestial WCS."""
    s = proj_plane_pixel_scales(wcs.celestial)
    return float(np.sqrt(s[0] * s[1]) * 3600.0)


def shifted_wcs(wcs: WCS, dra_arcsec: float, ddec_arcsec: float) -> WCS:
    """Celestial WCS with its reference position moved by a sky shift.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial (or 3-D; only the celestial part is used) WCS.
    dra_arcsec, ddec_arcsec : float
        Shift [arcsec] on the sky, east and north.  RA changes by
        ``dra / cos(dec)``.

    Returns
    -------
    astropy.wcs.WCS
        A new 2-D celestial WCS.
    """
    w = wcs.celestial.deepcopy()
    ra0, dec0 = w.wcs.crval
    w.wcs.crval = [ra0 + dra_arcsec / 3600.0 / np.cos(np.deg2rad(dec0)), dec0 + ddec_arcsec / 3600.0]
    w.wcs.set()
    return w


def psf_match(image: Image, image_psf_fwhm: float, ifu_psf_fwhm: float) -> np.ndarray:
    """Convolve an image to the IFU resolution.

    Gaussian kernel of FWHM ``sqrt(ifu^2 - image^2)`` [arcsec]; when the
    image PSF is already as broad as the IFU's the image is returned
    unchanged.  NaN pixels are interpolated over by the convolution.
    """
    kfwhm2 = float(ifu_psf_fwhm) ** 2 - float(image_psf_fwhm) ** 2
    data = np.asarray(image.data, dtype=float)
    if kfwhm2 <= 0:
        return data.copy()
    sig_pix = np.sqrt(kfwhm2) * _FWHM_TO_SIGMA / pixscale_arcsec(image.wcs)
    kernel = Gaussian2DKernel(sig_pix)
    return convolve_fft(data, kernel, normalize_kernel=True, boundary="fill", fill_value=0.0,
                        nan_treatment="interpolate", preserve_nan=True, allow_huge=True)


def image_noise(data: np.ndarray, detect_nsigma: float = 2.5, dilate_pix: int = 5):
    """Background level and 1-sigma noise from source-free pixels.

    Two passes: sigma-clipped statistics of all pixels, then sources
    (connected pixels above ``detect_nsigma`` sigma, at least 5 pixels) are
    masked, dilated by ``dilate_pix`` pixels, and the statistics are
    recomputed on the rest.

    Returns
    -------
    median, std : float
    """
    finite = np.isfinite(data)
    mask = ~finite
    med, std = 0.0, 0.0
    for _ in range(2):
        _, med, std = sigma_clipped_stats(data, mask=mask, sigma=3.0, maxiters=10)
        src = finite & (data > med + detect_nsigma * std)
        lab, n = ndimage.label(src, structure=_STRUCT8)
        if n:
            sizes = ndimage.sum(src, lab, index=np.arange(1, n + 1))
            src = np.isin(lab, 1 + np.flatnonzero(sizes >= 5))
        src = ndimage.binary_dilation(src, structure=_STRUCT8, iterations=dilate_pix)
        mask = ~finite | src
        if mask.all():
            break
    return float(med), float(std)


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


def _pix_offset_arcsec(wcs: WCS, dx_pix: float, dy_pix: float):
    """East/north offset [arcsec] of a small pixel displacement near CRPIX."""
    cd = wcs.pixel_scale_matrix * 3600.0  # arcsec per pixel, (RA, Dec) rows
    d_ra_deg = cd[0, 0] * dx_pix + cd[0, 1] * dy_pix  # dRA*cos(dec) on the sky (TAN)
    d_dec = cd[1, 0] * dx_pix + cd[1, 1] * dy_pix
    return float(d_ra_deg), float(d_dec)


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
    from .io import galaxy_gratings

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


def _reproject_to(data, wcs_in, wcs_out, shape_out, order="bilinear"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, foot = reproject_interp((data, wcs_in), wcs_out, shape_out=shape_out, order=order)
    return out, foot


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
    from .extract import _same_grid

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


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------
def _positions(row):
    """Component names and (ra, dec) positions: [('', (ra, dec))] or A and B for mergers."""
    if bool(row["merger"]):
        comps = parse_components(row.get("components", ""))
        if len(comps) != 2:
            raise InputError(row["id"], "sample table", "merger without two component positions",
                             "set components to 'ra_a,dec_a;ra_b,dec_b' in degrees")
        return [("A", comps[0]), ("B", comps[1])]
    return [("", (float(row["ra"]), float(row["dec"])))]


def exclude_mask(region_file, wcs: WCS, shape, galaxy=None) -> np.ndarray:
    """Boolean mask of the spaxels inside a DS9/regions file (union of its shapes).

    Sky regions are converted with ``wcs`` (the aligned IFU WCS); pixel
    regions are taken as IFU-grid pixels.  Spaxels whose centre lies inside
    a shape are masked (``to_mask(mode='center')``).
    """
    from regions import PixelRegion, Regions

    fix = "give a DS9 region file (e.g. 'icrs; circle(ra,dec,r\")')"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            regs = Regions.read(str(region_file), format="ds9")
        except Exception as exc:  # noqa: BLE001 - regions raises many types
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(galaxy, region_file, f"region file cannot be parsed ({msg})", fix) from None
    # the reader skips what it cannot parse with a warning: a silently dropped
    # exclusion would change the science, so any skipped line is an error
    skipped = [str(w.message).splitlines()[0] for w in caught if "skipping" in str(w.message)]
    if skipped:
        raise InputError(galaxy, region_file, f"region file cannot be parsed ({skipped[0]})", fix)
    if len(regs) == 0:
        raise InputError(galaxy, region_file, "region file contains no regions",
                         "add at least one DS9 shape or clear exclude_region")
    out = np.zeros(shape, dtype=bool)
    for reg in regs:
        try:
            pix = reg if isinstance(reg, PixelRegion) else reg.to_pixel(wcs)
            m = pix.to_mask(mode="center")
            img = m.to_image(shape)
        except Exception as exc:  # noqa: BLE001
            raise InputError(galaxy, region_file, f"region {reg!r} cannot be used ({exc})",
                             "use circle/ellipse/box/polygon shapes in sky or image coordinates") from None
        if img is not None:
            out |= img > 0
    return out


def _bisector_side_a(wcs: WCS, shape, pos_a, pos_b) -> np.ndarray:
    """True for spaxels on the side of the perpendicular bisector containing ``pos_a``."""
    yy, xx = np.indices(shape)
    ra, dec = wcs.pixel_to_world_values(xx, yy)
    ra_m = 0.5 * (pos_a[0] + pos_b[0])
    dec_m = 0.5 * (pos_a[1] + pos_b[1])
    cosd = np.cos(np.deg2rad(dec_m))

    def off(r, d):
        dra = (np.asarray(r) - ra_m + 180.0) % 360.0 - 180.0
        return dra * cosd, np.asarray(d) - dec_m

    bx, by = off(*pos_b)
    ax, ay = off(*pos_a)
    px, py = off(ra, dec)
    proj = px * (bx - ax) + py * (by - ay)
    return proj <= 0.0


def region_stats(regions: dict, wcs: WCS, z: float) -> dict:
    """Spaxel counts, areas and circularised radii of each region.

    Returns ``{name: {'n_spaxels', 'area_arcsec2', 'r_kpc', 'r_cgm_kpc'}}``
    where ``r_kpc = sqrt(area / pi)`` of the region itself and
    ``r_cgm_kpc = sqrt((A_ISM + A_CGM) / pi)`` of its component (the outer
    CGM radius, see the module docstring).
    """
    pix_area = pixscale_arcsec(wcs) ** 2
    kpc_per_arcsec = COSMO.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60.0
    out = {}
    for name, m in regions.items():
        n = int(np.count_nonzero(m))
        area = n * pix_area
        suffix = name[3:]  # '' or '_A'
        outer = sum(np.count_nonzero(regions[k]) for k in (f"ISM{suffix}", f"CGM{suffix}") if k in regions) * pix_area
        out[name] = {
            "n_spaxels": n,
            "area_arcsec2": float(area),
            "r_kpc": float(np.sqrt(area / np.pi) * kpc_per_arcsec),
            "r_cgm_kpc": float(np.sqrt(outer / np.pi) * kpc_per_arcsec),
        }
    return out


def _check_params(params) -> dict:
    p = dict(DEFAULT_PARAMS)
    params = dict(params or {})
    if "variant" in params and "name" not in params:
        params["name"] = params.pop("variant")
    p.update(params)
    if p["cgm_outer"] not in CGM_OUTER:
        raise ValueError(f"cgm_outer={p['cgm_outer']!r} is not one of {CGM_OUTER}")
    if (float(p["ism_nsigma"]) <= 0 or int(p["dilation_iterations"]) < 0 or float(p["tophat_diameter_arcsec"]) < 0
            or float(p["cii_radius_factor"]) <= 0 or float(p["cii_nsigma"]) <= 0 or float(p["cii_window_kms"]) <= 0):
        raise ValueError(f"invalid mask parameters {p}")
    return p


def ism_image_mask(image: Image, matched: np.ndarray, positions, nsigma: float, galaxy=None,
                   max_dist_arcsec: float = 0.2):
    """ISM footprint on the image grid.

    Connected (8-connected) regions of ``matched`` above ``median + nsigma *
    noise`` containing each position; when a position's own pixel is below
    the threshold the region nearest to it within ``max_dist_arcsec`` is
    taken.

    Returns
    -------
    mask : ndarray of bool
    noise, background : float
    """
    bkg, noise = image_noise(matched)
    thresh = bkg + nsigma * noise
    above = np.isfinite(matched) & (matched > thresh)
    lab, n = ndimage.label(above, structure=_STRUCT8)
    keep = set()
    ps = pixscale_arcsec(image.wcs)
    for cname, (ra, dec) in positions:
        x, y = image.wcs.world_to_pixel_values(ra, dec)
        ix, iy = int(np.round(float(x))), int(np.round(float(y)))
        if not (0 <= ix < matched.shape[1] and 0 <= iy < matched.shape[0]):
            raise InputError(galaxy, image.path, f"galaxy position {ra:.6f},{dec:.6f} lies outside the image",
                             "check the ra/dec (components) in the sample table and the image WCS")
        lbl = lab[iy, ix]
        if lbl == 0 and n:
            dist, (jy, jx) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
            if dist[iy, ix] * ps <= max_dist_arcsec:
                lbl = lab[jy[iy, ix], jx[iy, ix]]
        if lbl == 0:
            what = f"component {cname} " if cname else ""
            raise InputError(galaxy, image.path,
                             f"ISM is empty: no pixel of {what}at {ra:.6f},{dec:.6f} above ism_nsigma={nsigma:g} "
                             f"x noise ({thresh:.3g} MJy/sr)",
                             "lower ism_nsigma for this variant or check the image/galaxy position")
        keep.add(int(lbl))
    return np.isin(lab, sorted(keep)), noise, bkg


def reproject_sb(data: np.ndarray, wcs_in: WCS, wcs_out: WCS, shape_out) -> np.ndarray:
    """Flux-conserving reprojection of a surface-brightness map (``reproject_exact``).

    Each output pixel gets the area-weighted mean of the input pixels it
    overlaps (NaN where it overlaps none): the mean surface brightness over
    the spaxel, in the input units.
    """
    from reproject import reproject_exact

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, foot = reproject_exact((np.asarray(data, float), wcs_in.celestial), wcs_out.celestial,
                                    shape_out=tuple(shape_out))
    out = np.asarray(out, float)
    out[~(foot > 0)] = np.nan
    return out


def ism_ifu_mask(sb: np.ndarray, wcs: WCS, positions, threshold: float, max_dist_arcsec: float = 0.2) -> np.ndarray:
    """ISM on the IFU grid: connected spaxels of ``sb`` above ``threshold`` containing each position.

    ``sb`` is the PSF-matched image reprojected onto the IFU grid
    (:func:`reproject_sb`).  Regions are 8-connected; when a position's own
    spaxel is below the threshold the region nearest to it within
    ``max_dist_arcsec`` is taken.  Positions outside the grid, or with no
    region near them, contribute nothing (the caller decides what an empty
    mask means).
    """
    above = np.isfinite(sb) & (sb > threshold)
    lab, n = ndimage.label(above, structure=_STRUCT8)
    out = np.zeros(sb.shape, bool)
    if not n:
        return out
    ps = pixscale_arcsec(wcs)
    dist = idx = None
    for _, (ra, dec) in positions:
        x, y = wcs.world_to_pixel_values(ra, dec)
        ix, iy = int(np.round(float(x))), int(np.round(float(y)))
        if not (0 <= ix < sb.shape[1] and 0 <= iy < sb.shape[0]):
            continue
        lbl = lab[iy, ix]
        if lbl == 0:
            if dist is None:
                dist, idx = ndimage.distance_transform_edt(lab == 0, return_indices=True)
            if dist[iy, ix] * ps <= max_dist_arcsec:
                lbl = lab[idx[0][iy, ix], idx[1][iy, ix]]
        if lbl:
            out |= lab == lbl
    return out


def cii_outer_boundary(alma, row, params, wcs: WCS, shape, positions) -> tuple[np.ndarray, dict]:
    """Outer CGM boundary of the [C II] mask variants, on the IFU grid.

    ``cgm_outer: 4r_cii``: spaxels whose centre lies within ``cii_radius_factor``
    (4) times the beam-deconvolved [C II] half-light radius
    (:func:`ismcgm.cii.cii_half_light_radius`) of the galaxy position (for a
    merger: of either component position, with the radius fitted jointly).
    ``cgm_outer: cii_3sigma``: the region inside the [C II] moment-0
    ``cii_nsigma`` (3) contour (:func:`ismcgm.cii.cii_contour_region`),
    reprojected onto the IFU grid with ``reproject_exact``; a spaxel belongs
    to it when at least half of its area does.

    Returns
    -------
    outer : ndarray of bool
    info : dict
        ``r_cii_kpc`` (4r_cii) or ``cii_mom0_rms`` [Jy/beam km/s] (cii_3sigma).
    """
    from regions import CircleSkyRegion
    from astropy.coordinates import SkyCoord

    from . import cii

    gid, z = row["id"], float(row["z"])
    if params["cgm_outer"] == "4r_cii":
        hl = cii.cii_half_light_radius(alma, z, positions, float(params["cii_window_kms"]), galaxy=gid)
        radius = float(params["cii_radius_factor"]) * hl["r_arcsec"]
        outer = np.zeros(tuple(shape), bool)
        for _, (ra, dec) in positions:
            circle = CircleSkyRegion(SkyCoord(ra * u.deg, dec * u.deg), radius * u.arcsec)
            outer |= circle.to_pixel(wcs).to_mask(mode="center").to_image(tuple(shape)) > 0
        return outer, {"r_cii_kpc": hl["r_kpc"], "r_outer_arcsec": radius}
    region, noise = cii.cii_contour_region(alma, z, positions, float(params["cii_nsigma"]),
                                           float(params["cii_window_kms"]), gid)
    frac = reproject_sb(region.astype(float), alma.wcs, wcs, shape)
    return np.nan_to_num(frac) >= 0.5, {"cii_mom0_rms": noise}


def make_masks(image: Image, cube: Cube, aligned_wcs: WCS, row, params=None, alma=None) -> dict:
    """ISM and CGM masks on the aligned IFU grid of the reference grating.

    Parameters
    ----------
    image : ismcgm.io.Image
        Continuum image (correct WCS).
    cube : ismcgm.io.Cube
        Reference-grating cube: gives the grid shape and the invalid spaxels.
    aligned_wcs : astropy.wcs.WCS
        Celestial WCS of the cube after alignment (:func:`shifted_wcs`).
    row : mapping
        Sample row (``id``, ``z``, ``ra``, ``dec``, ``image_psf_fwhm``,
        ``ifu_psf_fwhm``, ``merger``, ``components``, ``exclude_region``).
    params : dict, optional
        Mask variant (keys of :data:`DEFAULT_PARAMS`).
    alma : ismcgm.cii.AlmaCube, optional
        The galaxy's [C II] cube, for ``cgm_outer`` ``4r_cii`` and
        ``cii_3sigma`` (:func:`cii_outer_boundary`).  Without it those
        variants fall back to the top-hat boundary with a warning
        (``cgm_outer_used`` says which boundary was used).

    Returns
    -------
    dict
        ``regions``: ``{'ISM', 'CGM'}`` or ``{'ISM_A', 'CGM_A', 'ISM_B',
        'CGM_B'}`` boolean (ny, nx) arrays; ``info``: :func:`region_stats`;
        ``wcs`` (aligned), ``params``, ``noise`` and ``background`` [MJy/sr]
        of the PSF-matched image, ``threshold`` [MJy/sr], ``ism_sb`` (the
        PSF-matched image reprojected onto the aligned IFU grid, mean
        surface brightness per spaxel, thresholded for the ISM),
        ``ism_image`` (ISM footprint on the image grid), ``positions``,
        ``cgm_outer_used`` and ``cgm_outer_info`` (:func:`cii_outer_boundary`).

    Raises
    ------
    InputError
        No overlap, empty ISM at the threshold, unparsable region file, or
        empty CGM.
    """
    gid = row["id"]
    p = _check_params(params)
    shape = cube.sci.shape[1:]
    w = aligned_wcs.celestial
    positions = _positions(row)

    matched = psf_match(image, row["image_psf_fwhm"], row["ifu_psf_fwhm"])
    _, foot = _reproject_to(np.ones(image.data.shape), image.wcs, w, shape, order="nearest-neighbor")
    valid = cube.valid_spaxels
    if not np.any((foot > 0) & valid):
        raise InputError(gid, image.path, f"image does not overlap the IFU cube {cube.path}",
                         "check the image/cube paths and their WCS")

    ism_img, noise, bkg = ism_image_mask(image, matched, positions, float(p["ism_nsigma"]), gid)
    thresh = bkg + float(p["ism_nsigma"]) * noise
    sb = reproject_sb(matched, image.wcs, w, shape)
    ism = ism_ifu_mask(sb, w, positions, thresh)
    if not ism.any():
        # sources smaller than a spaxel: fall back to the nearest-pixel footprint of the image-grid ISM
        ism_f, _ = _reproject_to(ism_img.astype(float), image.wcs, w, shape, order="nearest-neighbor")
        ism = np.nan_to_num(ism_f) > 0.5
        if ism.any():
            log.warning("%s: no IFU spaxel's mean surface brightness reaches the ISM threshold; "
                        "using the nearest-pixel footprint of the image-grid ISM", gid)
    if not ism.any():
        raise InputError(gid, image.path, f"ISM (ism_nsigma={p['ism_nsigma']:g}) falls outside the IFU field of {cube.path}",
                         "check the galaxy position and the alignment")

    # CGM: dilation, top-hat expansion, minus ISM
    grown = ism
    if int(p["dilation_iterations"]) > 0:
        grown = ndimage.binary_dilation(ism, structure=_STRUCT8, iterations=int(p["dilation_iterations"]))
    radius_pix = 0.5 * float(p["tophat_diameter_arcsec"]) / pixscale_arcsec(w)
    if radius_pix > 0:
        kern = Tophat2DKernel(radius_pix)
        k = kern.array
        eps = 0.5 * k[k > 0].min()
        expanded = convolve(grown.astype(float), kern, boundary="fill", fill_value=0.0, normalize_kernel=False) > eps
    else:
        expanded = grown
    drop = ~valid
    excl = str(row.get("exclude_region", "") or "").strip()
    if excl and excl.lower() != "nan":
        drop = drop | exclude_mask(excl, w, shape, gid)
    ism = ism & ~drop
    if not ism.any():
        raise InputError(gid, cube.path, "ISM is empty after removing invalid/excluded spaxels",
                         "check exclude_region and the cube's NaN spaxels")
    side_a = _bisector_side_a(w, shape, positions[0][1], positions[1][1]) if len(positions) == 2 else None

    outer_used, outer_info = p["cgm_outer"], {}
    if outer_used != "tophat" and alma is None:
        log.warning("%s: no ALMA cube for cgm_outer=%s; using the top-hat CGM boundary", gid, outer_used)
        outer_used = "tophat"
    if outer_used != "tophat":
        from .cii import NoCiiExtent

        try:
            outer, outer_info = cii_outer_boundary(alma, row, p, w, shape, positions)
            cgm = outer & ~ism & ~drop
            halves = [cgm] if side_a is None else [cgm & side_a, cgm & ~side_a]
            if not all(h.any() for h in halves):
                raise NoCiiExtent(gid, alma.path, f"the [C II] boundary (cgm_outer={outer_used}) lies inside the ISM",
                                  "use cgm_outer: tophat for this galaxy")
            expanded = outer
        except NoCiiExtent as exc:
            log.warning("%s; using the top-hat CGM boundary", exc)
            outer_used, outer_info = "tophat", {}
    cgm = expanded & ~ism & ~drop
    if not cgm.any():
        raise InputError(gid, cube.path,
                         f"CGM is empty (tophat_diameter_arcsec={p['tophat_diameter_arcsec']:g}, after invalid/excluded spaxels)",
                         "enlarge the top-hat or check exclude_region / the cube's field of view")

    if side_a is not None:
        regions = {"ISM_A": ism & side_a, "CGM_A": cgm & side_a, "ISM_B": ism & ~side_a, "CGM_B": cgm & ~side_a}
        for name, m in regions.items():
            if not m.any():
                raise InputError(gid, cube.path, f"merger region {name} is empty (ism_nsigma={p['ism_nsigma']:g})",
                                 "check the component positions in the sample table")
    else:
        regions = {"ISM": ism, "CGM": cgm}

    return {
        "regions": regions,
        "info": region_stats(regions, w, float(row["z"])),
        "wcs": w,
        "params": p,
        "noise": noise,
        "background": bkg,
        "threshold": thresh,
        "ism_sb": sb,
        "ism_image": ism_img,
        "positions": positions,
        "cgm_outer_used": outer_used,
        "cgm_outer_info": outer_info,
    }


def write_masks(path, masks, wcs: WCS | None = None, params=None, meta=None) -> None:
    """Write masks to FITS: one uint8 ImageHDU per region.

    Parameters
    ----------
    path : path-like
    masks : dict
        The :func:`make_masks` result (``regions`` + ``info``), or a plain
        ``{name: bool array}`` (then ``meta['Z']`` gives the redshift for
        the radii).
    wcs : astropy.wcs.WCS, optional
        Aligned celestial WCS (default ``masks['wcs']``).
    params : dict, optional
        Variant parameters (default ``masks['params']``), written as
        ``VARIANT, ISMNSIG, DILITER, TOPHATD, CGMOUTER`` in every header.
    meta : dict, optional
        Extra primary-header cards (short keys, e.g. ``ID``, ``Z``,
        ``SHIFTRA``, ``SHIFTDEC``, ``ALIGNRES``).

    Each region header carries the WCS, ``REGION``, ``NSPAX``, ``AREA``
    [arcsec2], ``RKPC`` and ``RCGMKPC`` [kpc].
    """
    meta = dict(meta or {})
    if "regions" in masks:
        regions = masks["regions"]
        wcs = wcs if wcs is not None else masks["wcs"]
        params = params if params is not None else masks.get("params")
        info = masks.get("info")
    else:
        regions = masks
        info = None
    params = {**DEFAULT_PARAMS, **(params or {})}
    if info is None:
        info = region_stats(regions, wcs, float(meta.get("Z", meta.get("z", np.nan))))
    prim = fits.PrimaryHDU()
    for k, v in meta.items():
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            v = v.item()
        key = str(k).upper()
        prim.header[key if len(key) <= 8 else f"HIERARCH {key}"] = v
    for k, key in PARAM_KEYS.items():
        prim.header[key] = params[k]
    prim.header["REGIONS"] = ",".join(regions)
    hdus = [prim]
    # full (17-digit) precision: the aligned CRVAL must survive the round trip
    whdr = wcs.celestial.to_header(relax=WCSHDO_P17 | WCSHDO_safe)
    for name, m in regions.items():
        h = fits.Header()
        h.update(whdr)
        h["REGION"] = name
        h["NSPAX"] = (info[name]["n_spaxels"], "number of spaxels")
        h["AREA"] = (info[name]["area_arcsec2"], "region area [arcsec2]")
        h["RKPC"] = (info[name]["r_kpc"], "sqrt(area/pi) of this region [kpc]")
        h["RCGMKPC"] = (info[name]["r_cgm_kpc"], "sqrt((A_ISM+A_CGM)/pi), outer CGM radius [kpc]")
        for k, key in PARAM_KEYS.items():
            h[key] = params[k]
        hdus.append(fits.ImageHDU(np.asarray(m, dtype=np.uint8), header=h, name=name))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_masks(path):
    """Read a mask file written by :func:`write_masks`.

    Returns
    -------
    masks : dict
        ``{name: bool array}`` in file order.
    wcs : astropy.wcs.WCS
        Aligned celestial WCS of the masks.
    headers : dict
        ``{'PRIMARY': header, name: header, ...}``.
    """
    masks, headers, wcs = {}, {}, None
    with fits.open(path, memmap=False) as hdul:
        headers["PRIMARY"] = hdul[0].header.copy()
        for h in hdul[1:]:
            masks[h.name] = np.asarray(h.data) > 0
            headers[h.name] = h.header.copy()
            if wcs is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wcs = WCS(h.header).celestial
    return masks, wcs, headers


# --------------------------------------------------------------------------
# line map (Fig. 1)
# --------------------------------------------------------------------------
def line_map(cube: Cube, z: float, line: str = "HA", window_kms: float = 500.0,
             continuum_kms=(2000.0, 4000.0)) -> np.ndarray:
    """Continuum-subtracted line map [erg/s/cm2 per spaxel] by a window collapse.

    The line is summed over channels within ``window_kms`` of its redshifted
    wavelength; the continuum is the per-spaxel median of the channels
    between ``continuum_kms[0]`` and ``continuum_kms[1]`` on both sides,
    with channels near other lines removed (see :func:`collapse_continuum`).

    Parameters
    ----------
    cube : ismcgm.io.Cube
    z : float
    line : str
        A name of :data:`ismcgm.instrument.LINE_WAVELENGTHS`.
    window_kms : float
    continuum_kms : (float, float)

    Returns
    -------
    ndarray (ny, nx)
        Line flux per spaxel (NaN where the spaxel has no valid channel).
    """
    lam0 = ins.observed_wavelength_um(line, z)
    dv = (cube.wave_um / lam0 - 1.0) * ins.C_KMS
    win = np.abs(dv) <= window_kms
    if not win.any():
        raise ValueError(f"{line} at z={z} is outside the cube {cube.path}")
    others = np.ones_like(win)
    for lam in ins.TRANSITIONS.values():
        others &= np.abs(cube.wave_um / (lam * (1 + z) * 1e-4) - 1.0) * ins.C_KMS > window_kms + 500.0
    side = (np.abs(dv) >= continuum_kms[0]) & (np.abs(dv) <= continuum_kms[1]) & others
    from .extract import flambda_factor

    fl = flambda_factor(cube.wave_um, cube.pixar_sr)  # MJy/sr -> erg/s/cm2/A per spaxel
    dlam_A = np.gradient(cube.wave_um) * 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data = cube.sci * fl[:, None, None]
        cont = np.nanmedian(data[side], axis=0) if side.any() else np.zeros(data.shape[1:])
        sub = (data[win] - cont[None]) * dlam_A[win][:, None, None]
        out = np.nansum(sub, axis=0)
        out[~np.any(np.isfinite(data[win]), axis=0)] = np.nan
    return out
