"""The [C II] extent used by the mask variants: moment-0 map, its noise, the 3-sigma contour and the half-light radius."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
from astropy.wcs import WCS

from .. import instrument as ins
from ..constants import FWHM_PER_SIGMA, proper_kpc_per_arcsec
from ..io import InputError
from ..wcsutil import sky_to_pixel
from .cube import AlmaCube, check_line_coverage


# ---------------------------------------------------------------------------
# [C II] extent: the CGM outer boundaries of the [C II] mask variants (SPEC 3)
# ---------------------------------------------------------------------------
class NoCiiExtent(InputError):
    """[C II] too faint or unresolved to define a CGM boundary (the mask falls back to the top-hat)."""


def moment0(alma: AlmaCube, z: float, window_kms: float = 300.0, galaxy=None) -> np.ndarray:
    """[C II] moment-0 map [Jy/beam km/s]: channels within ``window_kms`` of systemic.

    NaN channels of a pixel count as 0; pixels with no finite channel are NaN.
    """
    check_line_coverage(alma, z, galaxy)
    v = alma.velocity(z)
    sel = np.abs(v) <= window_kms
    if not sel.any():
        raise InputError(galaxy if galaxy is not None else alma.galaxy, alma.path,
                         f"no channel within {window_kms:g} km/s of [C II] at z={z:.4f}",
                         "widen cii_window_kms of the mask variant")
    dv = abs(ins.C_KMS * alma.channel_width_hz / alma.nu_line(z))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mom0 = np.nansum(alma.data[sel], axis=0) * dv
    mom0[~alma.valid] = np.nan
    return mom0


def _pixel_offsets_arcsec(wcs: WCS, shape, ra: float, dec: float) -> np.ndarray:
    """Angular distance [arcsec] of every pixel centre from (ra, dec)."""
    from astropy.coordinates import SkyCoord

    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    sky = wcs.celestial.pixel_to_world(xx, yy)
    return sky.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec


def moment0_noise(mom0: np.ndarray, alma: AlmaCube, positions, exclude_arcsec: float = 1.0) -> float:
    """Pixel rms of a moment-0 map: sigma-clipped std of the pixels farther than
    ``exclude_arcsec`` (and at least 3 BMAJ) from every galaxy position."""
    from astropy.stats import sigma_clipped_stats

    far = np.isfinite(mom0)
    for _, (ra, dec) in positions:
        far &= _pixel_offsets_arcsec(alma.wcs, mom0.shape, ra, dec) > max(exclude_arcsec, 3 * alma.bmaj)
    if far.sum() < 50:
        raise InputError(alma.galaxy, alma.path, "too few signal-free pixels for the [C II] moment-0 noise",
                         "give a cube with a field of view larger than ~2x the source")
    return float(sigma_clipped_stats(mom0[far], sigma=3.0)[2])


def cii_contour_region(alma: AlmaCube, z: float, positions, nsigma: float = 3.0, window_kms: float = 300.0,
                       galaxy=None) -> tuple[np.ndarray, float]:
    """Region inside the [C II] ``nsigma`` contour, on the ALMA grid.

    The 8-connected pixels of the moment-0 map (:func:`moment0`) above
    ``nsigma`` times its rms (:func:`moment0_noise`) that contain a galaxy
    position (reach within half the beam's minor FWHM of it) and cover at
    least half a beam (smaller islands are noise peaks).

    Returns
    -------
    region : ndarray of bool (ny, nx)
    noise : float
        Moment-0 rms [Jy/beam km/s].
    """
    from scipy import ndimage

    gid = galaxy if galaxy is not None else alma.galaxy
    mom0 = moment0(alma, z, window_kms, gid)
    noise = moment0_noise(mom0, alma, positions)
    lab, n = ndimage.label(np.nan_to_num(mom0) > nsigma * noise, structure=np.ones((3, 3), bool))
    keep = set()
    for _, (ra, dec) in positions:
        near = _pixel_offsets_arcsec(alma.wcs, mom0.shape, ra, dec) <= 0.5 * alma.bmin
        keep |= set(np.unique(lab[near & (lab > 0)]).tolist())
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, sorted(keep)) if keep else []
    keep = {k for k, n_pix in zip(sorted(keep), sizes) if n_pix >= 0.5 * alma.beam_area_pix}
    if not keep:
        raise NoCiiExtent(gid, alma.path, f"no [C II] emission above {nsigma:g} sigma at the galaxy position",
                         "use cgm_outer: tophat for this sample or check the redshift/position")
    return np.isin(lab, sorted(keep)), noise


def cii_half_light_radius(alma: AlmaCube, z: float, positions, window_kms: float = 300.0,
                          fit_radius_arcsec: float = 1.5, min_snr: float = 5.0, galaxy=None) -> dict:
    """Beam-deconvolved [C II] half-light radius from a model fit to the moment-0 map.

    Each component (``positions``: ``[(name, (ra, dec)), ...]``, two for a
    merger) is a circular Gaussian source of common size ``s``; convolved
    with the (elliptical Gaussian) beam it is an elliptical Gaussian of
    covariance ``s^2 I + C_beam``.  Amplitudes, ``s`` and centres within
    0.3" of the positions are fitted by least squares
    (``scipy.optimize.least_squares``) to the moment-0 pixels within
    ``fit_radius_arcsec`` of any position.  The half-light radius is that
    of the intrinsic Gaussian, ``r = s sqrt(2 ln 2)`` (its FWHM / 2).  This
    stands in for the uv-plane profile fits of Ikeda et al. (2025); a fit
    uses the bright core and is far less noisy than a curve of growth (on
    the mock, growth-curve radii scatter by 20-50 % between noise
    realisations, fitted ones by ~5-10 %).  Errors come from the fit
    covariance scaled by ``sqrt(beam area in pixels)`` (the pixels' noise is
    correlated over a beam).

    Returns
    -------
    dict
        ``r_arcsec``, ``r_kpc``, ``r_err_arcsec``, ``snr`` (of the faintest
        component's amplitude).

    Raises
    ------
    NoCiiExtent
        A component below ``min_snr`` sigma, or the source unresolved
        (``r`` below a tenth of the beam's FWHM / 2 or within 2 sigma of 0).
    """
    from scipy.optimize import least_squares

    gid = galaxy if galaxy is not None else alma.galaxy
    mom0 = moment0(alma, z, window_kms, gid)
    rms = moment0_noise(mom0, alma, positions)
    yy, xx = np.mgrid[0 : mom0.shape[0], 0 : mom0.shape[1]]
    sel = np.isfinite(mom0)
    near = np.zeros(mom0.shape, bool)
    offsets = []
    for _, (ra, dec) in positions:
        near |= _pixel_offsets_arcsec(alma.wcs, mom0.shape, ra, dec) <= fit_radius_arcsec
        x0, y0 = alma.wcs.world_to_pixel_values(ra, dec)
        offsets.append((x0, y0, np.linalg.inv(sky_to_pixel(alma.wcs.celestial, x0, y0))))
    sel &= near
    en = [ainv @ np.stack([xx[sel] - x0, yy[sel] - y0]) for x0, y0, ainv in offsets]  # (east, north) ["]
    pa = np.deg2rad(alma.bpa)
    maj, mnr = np.array([np.sin(pa), np.cos(pa)]), np.array([np.cos(pa), -np.sin(pa)])
    c_beam = (alma.bmaj / FWHM_PER_SIGMA) ** 2 * np.outer(maj, maj) + (alma.bmin / FWHM_PER_SIGMA) ** 2 * np.outer(mnr, mnr)
    data = mom0[sel]
    nc = len(positions)

    def model(p):
        cinv = np.linalg.inv(c_beam + p[0] ** 2 * np.eye(2))
        out = np.zeros_like(data)
        for c in range(nc):
            amp, de, dn = p[1 + 3 * c : 4 + 3 * c]
            d = en[c] - np.array([[de], [dn]])
            out += amp * np.exp(-0.5 * np.einsum("ik,ij,jk->k", d, cinv, d))
        return out

    p0 = [0.5 * alma.bmaj / FWHM_PER_SIGMA] + [max(float(np.nanmax(data)), rms), 0.0, 0.0] * nc
    lo = [0.0] + [0.0, -0.3, -0.3] * nc
    hi = [2.0] + [np.inf, 0.3, 0.3] * nc
    res = least_squares(lambda p: (model(p) - data) / rms, p0, bounds=(lo, hi))
    try:
        perr = np.sqrt(np.clip(np.diag(np.linalg.inv(res.jac.T @ res.jac)), 0, None)) * np.sqrt(alma.beam_area_pix)
    except np.linalg.LinAlgError:
        perr = np.full(res.x.size, np.inf)
    s = float(res.x[0])
    amps, amp_err = res.x[1::3], perr[1::3]
    snr = float(np.min(np.where(amp_err > 0, amps / amp_err, 0.0)))
    if not snr >= min_snr:
        raise NoCiiExtent(gid, alma.path, f"[C II] moment-0 detected at only {snr:.1f} sigma (< {min_snr:g})",
                          "use cgm_outer: tophat for this galaxy")
    k = np.sqrt(2.0 * np.log(2.0))
    beam_half = 0.5 * np.sqrt(alma.bmaj * alma.bmin)
    if s * k < 0.1 * beam_half or s < 2 * perr[0]:
        raise NoCiiExtent(gid, alma.path, f"[C II] is unresolved (intrinsic half-light radius {s * k:.3f}"
                          f" +- {perr[0] * k:.3f}\")", "use cgm_outer: tophat or cii_3sigma for this galaxy")
    kpc_per_arcsec = proper_kpc_per_arcsec(z)
    return {"r_arcsec": s * k, "r_kpc": s * k * kpc_per_arcsec, "r_err_arcsec": float(perr[0] * k), "snr": snr}
