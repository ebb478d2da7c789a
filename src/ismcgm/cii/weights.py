"""IFU masks -> fractional-coverage weights on the ALMA grid, and the region naming of the [C II] tables.

Fractional coverage
-------------------
The 0/1 masks live on the IFU grid (0.1" spaxels); the ALMA grid is finer
(typically 0.05-0.1").  Each mask is reprojected as a float image with
``reproject.reproject_exact`` (exact spherical-polygon overlap of the pixels
in sky coordinates).  The weight of an ALMA pixel is the *fraction of its
area covered by mask spaxels*, in [0, 1] (``reproject_exact`` returns the
mean over the part of the output pixel covered by the input grid, so the
weight is that value times the returned footprint).  A pixel contributes
``weight x value``: nothing is thresholded, ``sum(weights) x A_ALMA_pix``
equals the mask area, and the weights of disjoint masks (ISM, CGM) never add
to more than 1 in any pixel, so no flux is counted twice.  ALMA pixels that
are blank (NaN in every channel) get weight 0; if less than
``min_coverage`` (default 90 %) of a mask's area falls on valid ALMA pixels,
or a mask does not overlap the cube at all, :class:`ismcgm.io.InputError`
is raised.
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.wcs import WCS

from ..io import InputError
from ..regions import extension_region
from .cube import AlmaCube


# ---------------------------------------------------------------------------
# masks -> ALMA grid
# ---------------------------------------------------------------------------
class RegionWeights(dict):
    """``{region name: weights (ny, nx) in [0, 1]}`` with ``coverage``.

    ``coverage[name]`` is the fraction of the mask's area that falls on valid
    ALMA pixels.
    """

    coverage: dict

    def __init__(self, *args, coverage=None, **kw):
        super().__init__(*args, **kw)
        self.coverage = dict(coverage or {})


def reproject_masks(masks: dict, mask_wcs: WCS, alma: AlmaCube, galaxy=None,
                    min_coverage: float = 0.9) -> RegionWeights:
    """Fractional-coverage weights of IFU masks on the ALMA grid (see module doc).

    Parameters
    ----------
    masks : dict
        ``{name: bool array}`` on the grid of ``mask_wcs``.
    mask_wcs : astropy.wcs.WCS
        Celestial WCS of the masks (the *aligned* IFU WCS).
    alma : AlmaCube
    galaxy : str, optional
        For error messages (default ``alma.galaxy``).
    min_coverage : float
        Smallest accepted fraction of a mask's area on valid ALMA pixels.

    Returns
    -------
    RegionWeights
        ``{name: float array (ny, nx)}``, values in [0, 1]; ``.coverage``.
    """
    from reproject import reproject_exact

    galaxy = galaxy if galaxy is not None else alma.galaxy
    mask_wcs = mask_wcs.celestial
    a_mask = float((mask_wcs.proj_plane_pixel_area()).to_value(u.arcsec**2))
    a_alma = alma.pixscale**2
    valid = alma.valid
    out, cov = {}, {}
    for name, m in masks.items():
        m = np.asarray(m, dtype=bool)
        if not m.any():
            raise InputError(galaxy, alma.path, f"mask {name} is empty", "check the mask stage output for this region")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, foot = reproject_exact((m.astype(float), mask_wcs), alma.wcs, shape_out=alma.shape2d, parallel=False)
        wgt = np.clip(np.nan_to_num(arr) * np.nan_to_num(foot), 0.0, 1.0)
        wgt[~valid] = 0.0
        expected = m.sum() * a_mask / a_alma
        frac = float(wgt.sum() / expected)
        if wgt.sum() <= 0:
            raise InputError(
                galaxy, alma.path, f"mask {name} does not overlap the ALMA cube footprint",
                "check the ALMA cube (alma_cube) and the galaxy coordinates/WCS",
            )
        if frac < min_coverage:
            raise InputError(
                galaxy, alma.path, f"only {100 * frac:.0f}% of mask {name} falls on valid ALMA pixels",
                "use a cube that covers the whole region (or lower cii min_coverage)",
            )
        out[name], cov[name] = wgt, frac
    return RegionWeights(out, coverage=cov)


def region_names(galaxy: str, name: str) -> tuple[str, str]:
    """(component, region) of a mask extension (:func:`ismcgm.regions.extension_region`)."""
    return extension_region(galaxy, name)
