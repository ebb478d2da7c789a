"""Mask files and mask placement.

Owns the mask file ``results/masks/<variant>/<id>.fits`` (:func:`write_masks`,
:func:`read_masks`; the variant parameters in its headers, the region
statistics) and the one way a galaxy's masks are put onto a cube's aligned
grid (:func:`masks_on_cube`), used by the extraction, the cube-level Monte
Carlo, [C II] and the validation.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, WCSHDO_P17, WCSHDO_safe

from .constants import proper_kpc_per_arcsec
from .extract import carry_mask
from .io import atomic_path
from .wcsutil import pixscale_arcsec, shifted_wcs

#: Default mask definition (the paper's; SPEC sections 2-3).
DEFAULT_PARAMS = {
    "name": "default",
    "ism_nsigma": 9.0,
    "dilation_iterations": 1,
    "tophat_diameter_arcsec": 0.5,
    "tophat_radius_arcsec": None,
    "cgm_outer": "tophat",
    "cii_radius_factor": 4.0,
    "cii_nsigma": 3.0,
    "cii_window_kms": 300.0,
}


#: Short FITS keywords of the variant parameters.
PARAM_KEYS = {
    "name": "VARIANT",
    "ism_nsigma": "ISMNSIG",
    "dilation_iterations": "DILITER",
    "tophat_diameter_arcsec": "TOPHATD",
    "tophat_radius_arcsec": "TOPHATR",
    "cgm_outer": "CGMOUTER",
    "cii_radius_factor": "CIIRFAC",
    "cii_nsigma": "CIINSIG",
    "cii_window_kms": "CIIWIN",
}


def tophat_radius_arcsec(params) -> float:
    """Radius [arcsec] of the CGM top-hat: ``tophat_radius_arcsec`` when set, else half ``tophat_diameter_arcsec``.

    The paper's "circular top-hat kernel with a size of 0.5 arcsec" does not say radius or diameter
    (``astropy.convolution.Tophat2DKernel`` takes a radius); README, "Top-hat size".
    """
    r = params.get("tophat_radius_arcsec")
    return float(r) if r is not None else 0.5 * float(params["tophat_diameter_arcsec"])


def region_stats(regions: dict, wcs: WCS, z: float, kpc_per_arcsec: float | None = None) -> dict:
    """Spaxel counts, areas and circularised radii of each region.

    Returns ``{name: {'n_spaxels', 'area_arcsec2', 'r_kpc', 'r_cgm_kpc'}}``
    where ``r_kpc = sqrt(area / pi)`` of the region itself and
    ``r_cgm_kpc = sqrt((A_ISM + A_CGM) / pi)`` of its component (the outer
    CGM radius, see the module docstring).  ``kpc_per_arcsec``: the scale at
    ``z`` when the caller has it (default: computed, :func:`ismcgm.constants.proper_kpc_per_arcsec`).
    """
    pix_area = pixscale_arcsec(wcs) ** 2
    if kpc_per_arcsec is None:
        kpc_per_arcsec = proper_kpc_per_arcsec(z)
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
    [arcsec2], ``RKPC`` and ``RCGMKPC`` [kpc].  With a redshift (``meta['Z']``)
    the primary header also records ``KPCAS``, the proper kpc per arcsec of
    the radii (given in ``meta`` or computed): the jobs that read the masks
    take their kpc scale from it (:func:`kpc_per_arcsec`) instead of
    importing the cosmology (~0.5 s a job).
    """
    meta = dict(meta or {})
    z = float(meta.get("Z", meta.get("z", np.nan)))
    if meta.get("KPCAS") is None and np.isfinite(z):
        meta["KPCAS"] = float(proper_kpc_per_arcsec(z))
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
        info = region_stats(regions, wcs, z, meta.get("KPCAS"))
    prim = fits.PrimaryHDU()
    for k, v in meta.items():
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            v = v.item()
        key = str(k).upper()
        prim.header[key if len(key) <= 8 else f"HIERARCH {key}"] = v
    for k, key in PARAM_KEYS.items():
        if params.get(k) is not None:  # an unset optional parameter (tophat_radius_arcsec) writes no card
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
            if params.get(k) is not None:
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


def kpc_per_arcsec(headers, z: float | None = None) -> float:
    """The proper kpc per arcsec a mask file's radii were computed with (``KPCAS`` of its primary header,
    :func:`write_masks`); ``headers``: :func:`read_masks`'s headers or the primary header itself.

    A mask file written before the card existed has none: then the scale is computed at ``z`` (the same
    number, with the cosmology's import), and without ``z`` it is an error.
    """
    prim = headers.get("PRIMARY", headers) if isinstance(headers, dict) else headers
    if "KPCAS" in prim:
        return float(prim["KPCAS"])
    if z is None:
        raise KeyError("the mask file has no KPCAS card and no redshift was given: rebuild the masks")
    return float(proper_kpc_per_arcsec(float(z)))


def alignment_shift(alignment, grating: str | None = None) -> tuple[float, float]:
    """The alignment shift ``(shift_ra_arcsec, shift_dec_arcsec)`` of a galaxy.

    Parameters
    ----------
    alignment : pandas.DataFrame, astropy.io.fits.Header or (float, float)
        The galaxy's alignment table (``results/alignment/<id>.csv``, one row
        per grating), the primary header of its mask file (``SHIFTRA``,
        ``SHIFTDEC``; 0 when absent) or the shift itself.
    grating : str, optional
        Row of the alignment table (default: its first row; the shift is
        fitted jointly, so every row holds the same shift).
    """
    if isinstance(alignment, fits.Header):
        return float(alignment.get("SHIFTRA", 0.0)), float(alignment.get("SHIFTDEC", 0.0))
    if isinstance(alignment, tuple):
        return alignment
    row = alignment.iloc[0] if grating is None else alignment.set_index("grating").loc[grating]
    return row["shift_ra_arcsec"], row["shift_dec_arcsec"]


def aligned_wcs(cube_wcs: WCS, alignment=None, grating: str | None = None) -> WCS:
    """Aligned celestial WCS of a cube (:func:`alignment_shift`; ``alignment=None``: already aligned)."""
    if alignment is None:
        return cube_wcs.celestial
    return shifted_wcs(cube_wcs, *alignment_shift(alignment, grating))


def masks_on_cube(masks, mask_wcs: WCS, cube_wcs: WCS, shape, alignment=None, grating: str | None = None,
                  names=None) -> tuple[dict, WCS]:
    """Put a galaxy's masks onto a cube's aligned grid.

    Parameters
    ----------
    masks : dict
        ``{extension: bool array}`` on the mask grid (:func:`read_masks`).
    mask_wcs : astropy.wcs.WCS
        Aligned celestial WCS of the masks.
    cube_wcs : astropy.wcs.WCS
        The cube's WCS as read (or already aligned, with ``alignment=None``).
    shape : (int, int)
        The cube's spatial shape.
    alignment, grating
        As in :func:`alignment_shift`.
    names : iterable of str, optional
        Extensions to carry (default: all).

    Returns
    -------
    carried : dict
        ``{extension: bool array of shape}`` (nearest spaxel centre,
        :func:`ismcgm.extract.carry_mask`).
    wcs : astropy.wcs.WCS
        The aligned celestial WCS of the cube.
    """
    wcs = aligned_wcs(cube_wcs, alignment, grating)
    names = list(masks) if names is None else list(names)
    return {n: carry_mask(masks[n], mask_wcs, wcs, shape) for n in names}, wcs
