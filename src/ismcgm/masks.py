"""ISM and CGM masks (SPEC sections 2-3, paper Sect. 3.1).

The geometry helpers live in :mod:`ismcgm.wcsutil`, the alignment in
:mod:`ismcgm.align`, the mask files in :mod:`ismcgm.maskio` and the line maps
in :mod:`ismcgm.linemap`.

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
nearest-pixel footprint; measured on the mock: README, "Measured on the
mock").  The image-grid footprint is still computed
(``ism_image``, it checks that the ISM is not empty at the threshold) and
is used, with a warning, only when no spaxel's mean reaches the threshold
(a source smaller than a spaxel).

CGM: ``binary_dilation`` of the IFU-grid ISM (3x3 structure,
``dilation_iterations``), then ``astropy.convolution.convolve`` with a
``Tophat2DKernel`` of radius ``tophat_radius_arcsec / pixscale`` when that
is set, else ``tophat_diameter_arcsec / 2 / pixscale`` (the paper's "size of
0.5 arcsec" is ambiguous; README, "Top-hat size"),
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

import astropy.units as u
import numpy as np
from astropy.wcs import WCS
from scipy import ndimage

from .cii.extent import NoCiiExtent, cii_contour_region, cii_half_light_radius
from .imaging import _STRUCT8, image_noise, psf_match
from .io import Cube, Image, InputError, parse_components
from .maskio import DEFAULT_PARAMS, region_stats, tophat_radius_arcsec
from .wcsutil import pixscale_arcsec

log = logging.getLogger(__name__)


#: Outer CGM boundaries: the top-hat expansion of the ISM (the paper's) and
#: the two [C II] robustness variants, which need the galaxy's ALMA cube.
CGM_OUTER = ("tophat", "4r_cii", "cii_3sigma")


def _reproject_to(data, wcs_in, wcs_out, shape_out, order="bilinear"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from reproject import reproject_interp  # lazy: reproject pulls in dask (~0.5 s)

        out, foot = reproject_interp((data, wcs_in), wcs_out, shape_out=shape_out, order=order)
    return out, foot


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


def _check_params(params) -> dict:
    p = dict(DEFAULT_PARAMS)
    params = dict(params or {})
    if "variant" in params and "name" not in params:
        params["name"] = params.pop("variant")
    p.update(params)
    if p["cgm_outer"] not in CGM_OUTER:
        raise InputError(None, "config", f"mask cgm_outer={p['cgm_outer']!r} is not one of {CGM_OUTER}", "fix the mask variant")
    if (float(p["ism_nsigma"]) <= 0 or int(p["dilation_iterations"]) < 0 or float(p["tophat_diameter_arcsec"]) < 0
            or (p.get("tophat_radius_arcsec") is not None and float(p["tophat_radius_arcsec"]) <= 0)
            or float(p["cii_radius_factor"]) <= 0 or float(p["cii_nsigma"]) <= 0 or float(p["cii_window_kms"]) <= 0):
        raise InputError(None, "config", f"invalid mask parameters {p}", "fix the mask variant")
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
    from astropy.coordinates import SkyCoord
    from regions import CircleSkyRegion


    gid, z = row["id"], float(row["z"])
    if params["cgm_outer"] == "4r_cii":
        hl = cii_half_light_radius(alma, z, positions, float(params["cii_window_kms"]), galaxy=gid)
        radius = float(params["cii_radius_factor"]) * hl["r_arcsec"]
        outer = np.zeros(tuple(shape), bool)
        for _, (ra, dec) in positions:
            circle = CircleSkyRegion(SkyCoord(ra * u.deg, dec * u.deg), radius * u.arcsec)
            outer |= circle.to_pixel(wcs).to_mask(mode="center").to_image(tuple(shape)) > 0
        return outer, {"r_cii_kpc": hl["r_kpc"], "r_outer_arcsec": radius}
    region, noise = cii_contour_region(alma, z, positions, float(params["cii_nsigma"]),
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
    radius_pix = tophat_radius_arcsec(p) / pixscale_arcsec(w)
    if radius_pix > 0:
        # imported here: astropy.convolution (with astropy.modeling, ~0.3 s) is needed only to build masks,
        # not by the jobs that read them and use this module's geometry (exclude_mask, the merger split)
        from astropy.convolution import Tophat2DKernel, convolve

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
                         f"CGM is empty (top-hat radius {tophat_radius_arcsec(p):g} arcsec, after invalid/excluded spaxels)",
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
