"""SYNTHETIC mock ALMA [C II] cubes (beam-convolved truth, beam-correlated noise)."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

from .. import instrument as ins
from ..constants import FWHM_PER_SIGMA
from ..io import atomic_path
from .maps import _celestial_header, _primary, _region_maps
from .plan import ALMA_DV_KMS, ALMA_NCHAN, _rng


# --------------------------------------------------------------------------
# ALMA [C II] cube
# --------------------------------------------------------------------------
def alma_geometry(plan):
    """Celestial header and frequency axis [Hz] of the ALMA cube (true WCS)."""
    a = plan["alma"]
    hdr = _celestial_header(plan["ra"], plan["dec"], a["npix"], a["pixscale"])
    nu0 = ins.cii_observed_ghz(plan["z"]) * 1e9
    dnu = nu0 * ALMA_DV_KMS / ins.C_KMS
    freqs = nu0 + (np.arange(ALMA_NCHAN) - ALMA_NCHAN / 2.0) * dnu
    return hdr, freqs


def _beam_kernel(plan):
    from astropy.convolution import Gaussian2DKernel  # imported here: slow, ALMA only

    bmaj, bmin, bpa = plan["alma"]["beam_arcsec_deg"]
    pix = plan["alma"]["pixscale"]
    # BPA east of north; x grows west, so the angle from +x (west) is 90 + bpa
    theta = np.deg2rad(90.0 + bpa)
    size = int(np.ceil(4 * bmaj / FWHM_PER_SIGMA / pix)) * 2 + 1
    return Gaussian2DKernel(bmaj / FWHM_PER_SIGMA / pix, bmin / FWHM_PER_SIGMA / pix, theta=theta, x_size=size, y_size=size)


def beam_area_pix(plan) -> float:
    """Beam solid angle in pixels: pi/(4 ln 2) BMAJ BMIN / pixel^2."""
    bmaj, bmin, _ = plan["alma"]["beam_arcsec_deg"]
    return np.pi / (4 * np.log(2)) * bmaj * bmin / plan["alma"]["pixscale"] ** 2


def cii_truth_map(plan):
    """Noiseless beam-convolved [C II] map [Jy km/s per pixel] and its header."""
    a = plan["alma"]
    hdr, freqs = alma_geometry(plan)
    maps = _region_maps(plan, a["npix"], a["pixscale"], (0.0, 0.0), 1e-4)
    nu_obs = ins.cii_observed_ghz(plan["z"]) * 1e9
    # erg/s/cm2 -> Jy km/s: F = S dv * 1e-23 * nu / c
    to_jykms = 1.0 / (1e-23 * nu_obs / ins.C_KMS)
    intrinsic = sum(plan["observed_fluxes"][r]["CII"] * to_jykms * maps[r] for r in maps)
    from astropy.convolution import convolve_fft

    conv = convolve_fft(intrinsic, _beam_kernel(plan), normalize_kernel=True, boundary="fill", fill_value=0.0)
    return conv, fits.Header(hdr)


def alma_cube(plan, noise: bool = True):
    """The ALMA [C II] cube [Jy/beam] (n_chan, ny, nx), with or without noise.

    The noise is white noise convolved with the beam and scaled to the
    per-channel rms ``alma.noise_mjy``: beam-correlated, as in real
    interferometric maps.
    """
    from astropy.convolution import convolve_fft

    a = plan["alma"]
    cii_map, _ = cii_truth_map(plan)
    _, freqs = alma_geometry(plan)
    nu_line = ins.cii_observed_ghz(plan["z"]) * 1e9 * (1 - plan["velocity_kms"] / ins.C_KMS)
    dnu = freqs[1] - freqs[0]
    # velocity of each channel edge relative to the line (radio convention)
    v_lo = (nu_line - (freqs - 0.5 * dnu)) / nu_line * ins.C_KMS
    v_hi = (nu_line - (freqs + 0.5 * dnu)) / nu_line * ins.C_KMS
    s = np.sqrt(2.0) * plan["sigma_kms"]
    frac = 0.5 * np.abs(erf(v_hi / s) - erf(v_lo / s))  # fraction of the flux per channel
    cube = frac[:, None, None] / ALMA_DV_KMS * cii_map[None] * beam_area_pix(plan)  # Jy/beam
    if noise:
        rng = _rng(plan["seed"], plan["id"], "alma", "noise")
        kern = _beam_kernel(plan)
        white = rng.standard_normal(cube.shape)
        corr = np.array([convolve_fft(c, kern, normalize_kernel=True, boundary="wrap") for c in white])
        cube = cube + corr * (a["noise_mjy"] * 1e-3 / corr.std())
    return cube


def write_alma(plan, path) -> None:
    """Write the ALMA [C II] cube ``<id>_cii_cube.fits`` (Jy/beam, beam keywords, FREQ axis)."""
    a = plan["alma"]
    cube = alma_cube(plan).astype(np.float32)
    cel, freqs = alma_geometry(plan)
    dnu = freqs[1] - freqs[0]
    w = WCS(naxis=3)
    cw = WCS(fits.Header(cel))
    w.wcs.ctype = ["RA---TAN", "DEC--TAN", "FREQ"]
    w.wcs.cunit = ["deg", "deg", "Hz"]
    w.wcs.crval = [cw.wcs.crval[0], cw.wcs.crval[1], freqs[0]]
    w.wcs.crpix = [cw.wcs.crpix[0], cw.wcs.crpix[1], 1.0]
    w.wcs.cdelt = [cw.wcs.cdelt[0], cw.wcs.cdelt[1], dnu]
    w.wcs.specsys = "LSRK"
    hdr = w.to_header()
    bmaj, bmin, bpa = a["beam_arcsec_deg"]
    hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = bmaj / 3600.0, bmin / 3600.0, bpa
    hdr["BUNIT"] = "Jy/beam"
    hdr["RESTFRQ"] = ins.CII_REST_GHZ * 1e9
    hdr["RMSJYBM"] = (a["noise_mjy"] * 1e-3, "per-channel rms [Jy/beam]")
    prim = _primary(plan, TELESCOP="ALMA")
    hdul = fits.HDUList([fits.PrimaryHDU(cube, header=prim.header + hdr)])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
