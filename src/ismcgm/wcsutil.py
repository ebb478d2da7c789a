"""Small celestial-WCS helpers shared by the alignment, the masks and [C II]: pixel scale, shifted WCS, sky <-> pixel offsets."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales


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


def _pix_offset_arcsec(wcs: WCS, dx_pix: float, dy_pix: float):
    """East/north offset [arcsec] of a small pixel displacement near CRPIX."""
    cd = wcs.pixel_scale_matrix * 3600.0  # arcsec per pixel, (RA, Dec) rows
    d_ra_deg = cd[0, 0] * dx_pix + cd[0, 1] * dy_pix  # dRA*cos(dec) on the sky (TAN)
    d_dec = cd[1, 0] * dx_pix + cd[1, 1] * dy_pix
    return float(d_ra_deg), float(d_dec)


def sky_to_pixel(wcs: WCS, x0: float, y0: float) -> np.ndarray:
    """2x2 matrix taking a sky offset (east, north) [arcsec] at pixel (x0, y0) to a pixel offset."""
    ra, dec = wcs.pixel_to_world_values(x0, y0)
    d = 1.0 / 3600.0
    xn, yn = wcs.world_to_pixel_values(ra, dec + d)
    xe, ye = wcs.world_to_pixel_values(ra + d / np.cos(np.deg2rad(dec)), dec)
    return np.array([[xe - x0, xn - x0], [ye - y0, yn - y0]], dtype=float)
