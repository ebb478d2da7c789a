"""SYNTHETIC mock rendering of the sky model: exact PSF-convolved pixel maps, the header WCS and primary headers shared by every mock product."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

from ..constants import FWHM_PER_SIGMA
from .plan import MOCK_LABEL


# --------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------
def _gaussian_pixel_map(x_edges, y_edges, x0, y0, sigma):
    """Exact pixel integral of a unit-flux circular Gaussian on a grid [arcsec]."""
    s = np.sqrt(2.0) * sigma
    fx = 0.5 * np.diff(erf((x_edges - x0) / s))
    fy = 0.5 * np.diff(erf((y_edges - y0) / s))
    return np.outer(fy, fx)


def _grid_edges(npix, pixscale, centre_offset):
    """Pixel edges [arcsec, offsets from the galaxy] of a square grid.

    ``centre_offset`` is the sky offset (east, north) of the grid centre
    from the galaxy position.  x grows to the west (RA decreases with x), as
    in the WCS written with CDELT1 < 0.
    """
    e = (np.arange(npix + 1) - npix / 2.0) * pixscale
    # east offset of pixel edge: dx_east = centre_east - e (x increases westward)
    x_edges = centre_offset[0] - e
    y_edges = centre_offset[1] + e
    return x_edges, y_edges


def _region_maps(plan, npix, pixscale, centre, psf_fwhm, which=("ISM", "CGM")):
    """Unit-flux maps per region (sum over components weighted by flux_fraction)."""
    xe, ye = _grid_edges(npix, pixscale, centre)
    psf_sigma = psf_fwhm / FWHM_PER_SIGMA
    maps = {r: np.zeros((npix, npix)) for r in which}
    for comp in plan["components"]:
        if "ISM" in maps:
            for cl in comp["clumps"]:
                sig = np.hypot(cl["sigma"], psf_sigma)
                # x edges decrease with index: integral sign flips, take abs
                maps["ISM"] += comp["flux_fraction"] * cl["weight"] * np.abs(
                    _gaussian_pixel_map(xe, ye, cl["dx"], cl["dy"], sig)
                )
        if "CGM" in maps and "halo_gaussians" in comp:  # paper geometry: exponential halo (.geometry)
            for g in comp["halo_gaussians"]:
                sig = np.hypot(g["sigma"], psf_sigma)
                maps["CGM"] += comp["flux_fraction"] * g["weight"] * np.abs(_gaussian_pixel_map(xe, ye, g["dx"], g["dy"], sig))
        elif "CGM" in maps:
            sig = np.hypot(comp["halo_sigma"], psf_sigma)
            maps["CGM"] += comp["flux_fraction"] * np.abs(_gaussian_pixel_map(xe, ye, comp["dx"], comp["dy"], sig))
    return maps


def _celestial_header(ra, dec, npix, pixscale):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(npix + 1) / 2.0, (npix + 1) / 2.0]
    w.wcs.cdelt = [-pixscale / 3600.0, pixscale / 3600.0]
    w.wcs.radesys = "ICRS"
    return w.to_header()


def _offset_radec(plan, dx, dy):
    cosd = np.cos(np.deg2rad(plan["dec"]))
    return plan["ra"] + dx / 3600.0 / cosd, plan["dec"] + dy / 3600.0


def _primary(plan, **cards):
    hdr = fits.Header()
    hdr["ORIGIN"] = ("ismcgm.mock", "synthetic survey generator")
    hdr["MOCK"] = (True, "SYNTHETIC data, not an observation")
    hdr["OBJECT"] = plan["id"]
    hdr["REDSHIFT"] = plan["z"]
    hdr["MOCKSEED"] = plan["seed"]
    for k, v in cards.items():
        hdr[k] = v
    hdr["COMMENT"] = MOCK_LABEL
    return fits.PrimaryHDU(header=hdr)
