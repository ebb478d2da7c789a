"""SYNTHETIC mock NIRSpec IFU cubes, their truth maps, and the NIRCam/HST images."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

from .. import instrument as ins
from ..instruments import air_to_vacuum_um, vacuum_to_air_um
from ..constants import FWHM_PER_SIGMA
from ..io import atomic_path
from .alma import cii_truth_map
from .maps import _celestial_header, _offset_radec, _primary, _region_maps
from .plan import FILTER_PIVOT_UM, _rng


# --------------------------------------------------------------------------
# IFU cubes
# --------------------------------------------------------------------------
def ifu_geometry(plan):
    """True and header (erroneous) celestial WCS headers of the IFU grid."""
    ifu = plan["ifu"]
    off = ifu["pointing_offset_arcsec"]
    ra_c, dec_c = _offset_radec(plan, off[0], off[1])
    err = plan["ifu_wcs_error_arcsec"]
    true_hdr = _celestial_header(ra_c, dec_c, ifu["npix"], ifu["pixscale"])
    ra_h, dec_h = ra_c + err[0] / 3600.0 / np.cos(np.deg2rad(dec_c)), dec_c + err[1] / 3600.0
    header_hdr = _celestial_header(ra_h, dec_h, ifu["npix"], ifu["pixscale"])
    return true_hdr, header_hdr


def _err_spectrum_flambda(grating: ins.Grating, wave_um, scale):
    """Per-spaxel 1σ noise [erg/s/cm2/A]: flat, rising towards the band edges."""
    e0 = 2.5e-22 * scale
    edge = 0.08
    shape = 1.0 + 1.5 * np.exp(-(wave_um - grating.wmin_um) / edge) + 1.5 * np.exp(-(grating.wmax_um - wave_um) / edge)
    return e0 * shape


def _flambda_to_mjysr(wave_um, pixar_sr):
    """Factor converting F_lambda per spaxel [erg/s/cm2/A] to MJy/sr."""
    fl = 1.0 * u.erg / u.s / u.cm**2 / u.AA
    fnu = fl.to(u.MJy, equivalencies=u.spectral_density(wave_um * u.um))
    return fnu.value / pixar_sr


def line_profiles(plan, grating: ins.Grating, wave_um):
    """Channel-integrated line profiles [1/A] of every line within the coverage.

    Returns ``{line: profile}`` where ``sum(profile) * dlam_A == 1`` for a line
    fully inside the band.
    """
    dlam_A = grating.dlam_um * 1e4
    if grating.air:  # channels of constant width in air: their vacuum edges
        air = vacuum_to_air_um(wave_um)
        lo = air_to_vacuum_um(air - 0.5 * grating.dlam_um) * 1e4
        hi = air_to_vacuum_um(air + 0.5 * grating.dlam_um) * 1e4
        dlam_A = hi - lo
    else:
        lo = (wave_um - 0.5 * grating.dlam_um) * 1e4
        hi = (wave_um + 0.5 * grating.dlam_um) * 1e4
    zfac = (1.0 + plan["z"]) * (1.0 + plan["velocity_kms"] / ins.C_KMS)
    out = {}
    for line, parts in ins.LINES.items():
        prof = np.zeros_like(wave_um)
        inside = False
        for t, frac in parts:
            mu = ins.TRANSITIONS[t] * zfac
            if not grating.covers(mu * 1e-4):
                continue
            inside = True
            sig_kms = np.hypot(plan["sigma_kms"], grating.lsf_sigma_kms(mu * 1e-4))
            s = mu * sig_kms / ins.C_KMS * np.sqrt(2.0)
            prof += frac * 0.5 * (erf((hi - mu) / s) - erf((lo - mu) / s)) / dlam_A
        if inside:
            out[line] = prof
    return out


def truth_maps(plan, grating: str) -> dict:
    """Noiseless, PSF-convolved, dust-attenuated line maps [erg/s/cm2 per spaxel]."""
    g = ins.get_grating(grating)
    wave = g.vacuum_grid()
    ifu = plan["ifu"]
    maps = _region_maps(plan, ifu["npix"], ifu["pixscale"], ifu["pointing_offset_arcsec"], ifu["psf_fwhm"])
    lines = line_profiles(plan, g, wave)
    obs = plan["observed_fluxes"]
    # a line of the config's list that the mock does not inject has zero flux
    return {line: obs["ISM"].get(line, 0.0) * maps["ISM"] + obs["CGM"].get(line, 0.0) * maps["CGM"]
            for line in lines}


def noiseless_cube(plan, grating: str, flambda: bool = False):
    """Noiseless SCI cube [MJy/sr], ERR cube [MJy/sr] and the (vacuum) wavelength grid.

    ``flambda``: in erg/s/cm2/A per spaxel instead (MUSE).
    """
    g = ins.get_grating(grating)
    wave = g.vacuum_grid()
    ifu = plan["ifu"]
    npix = ifu["npix"]
    pixar = (ifu["pixscale"] * u.arcsec) ** 2
    pixar_sr = pixar.to_value(u.sr)
    conv = np.ones_like(wave) if flambda else _flambda_to_mjysr(wave, pixar_sr)  # (n_wave,)

    maps = _region_maps(plan, npix, ifu["pixscale"], ifu["pointing_offset_arcsec"], ifu["psf_fwhm"])
    profiles = line_profiles(plan, g, wave)
    obs = plan["observed_fluxes"]
    names = list(profiles)
    # (n_line, n_wave) @ (n_line, npix*npix) per region
    prof = np.array([profiles[n] for n in names]) if names else np.zeros((0, wave.size))
    cube = np.zeros((wave.size, npix * npix))
    for region in ("ISM", "CGM"):
        amp = np.array([obs[region].get(n, 0.0) for n in names])
        cube += np.outer(amp @ prof, maps[region].ravel())
    # stellar continuum, ISM morphology, F_lambda ∝ lambda^-2 (observed frame)
    ha_obs = obs["ISM"]["HA"]
    cont_ha = ha_obs / (ifu["continuum_ew_rest_A"] * (1.0 + plan["z"]))  # erg/s/cm2/A at Hα
    lam_ha = ins.LINE_WAVELENGTHS["HA"] * (1 + plan["z"]) * 1e-4
    cont = cont_ha * (wave / lam_ha) ** -2.0
    cube += cont[:, None] * maps["ISM"].reshape(1, -1)
    cube = cube.reshape(wave.size, npix, npix) * conv[:, None, None]
    err_spec = _err_spectrum_flambda(g, wave, ifu["noise_scale"]) * conv
    err = np.broadcast_to(err_spec[:, None, None], cube.shape)
    return cube, err, wave


def _nan_mask(plan):
    """Spaxels outside the IFU footprint (NaN): a 1-spaxel border plus one side."""
    npix = plan["ifu"]["npix"]
    m = np.zeros((npix, npix), bool)
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True
    edges = {0: (slice(0, 2), slice(None)), 1: (slice(-2, None), slice(None)),
             2: (slice(None), slice(0, 2)), 3: (slice(None), slice(-2, None))}
    m[edges[plan["ifu"]["nan_side"]]] = True
    return m


def noisy_cube(plan, grating: str, flambda: bool = False):
    """SCI (noisy, with NaN edges), ERR and DQ arrays of one mock cube (``flambda``: :func:`noiseless_cube`)."""
    sci, err, wave = noiseless_cube(plan, grating, flambda)
    rng = _rng(plan["seed"], plan["id"], grating, "noise")
    sci = (sci + err * rng.standard_normal(sci.shape)).astype(np.float32)
    err = np.array(err, dtype=np.float32)
    nan = _nan_mask(plan)
    sci[:, nan] = np.nan
    err[:, nan] = np.nan
    dq = np.zeros(sci.shape, dtype=np.uint32)
    dq[:, nan] = 513  # DO_NOT_USE + NON_SCIENCE
    return sci, err, dq, wave


def write_cube(plan, grating: str, path) -> None:
    """Write one NIRSpec IFU stage-3 cube ``<id>_<grating>_s3d.fits``.

    PRIMARY + SCI, ERR (MJy/sr, 3-D WCS with the deliberately wrong
    celestial part) + DQ (513 = DO_NOT_USE + NON_SCIENCE on NaN spaxels).
    """
    if grating not in plan["ifu"]["gratings"]:
        raise ValueError(
            f"galaxy {plan['id']}: mock has no {grating} cube (it has {', '.join(plan['ifu']['gratings'])}) "
            "-- fix: request one of those"
        )
    g = ins.get_grating(grating)
    _, hdr_wcs = ifu_geometry(plan)
    if g.reader == "muse":
        return _write_muse_cube(plan, g, hdr_wcs, path)
    pixar_sr = ((plan["ifu"]["pixscale"] * u.arcsec) ** 2).to_value(u.sr)
    sci, err, dq, wave = noisy_cube(plan, grating)
    h3 = _cube_header(fits.Header(hdr_wcs), g)
    h3["PIXAR_SR"] = (pixar_sr, "nominal solid angle of a spaxel [sr]")
    h3["PIXAR_A2"] = (plan["ifu"]["pixscale"] ** 2, "nominal area of a spaxel [arcsec2]")
    hdul = fits.HDUList(
        [
            _primary(plan, TELESCOP="JWST", INSTRUME="NIRSPEC", EXP_TYPE="NRS_IFU",
                     GRATING=g.label, FILTER=g.band),
            fits.ImageHDU(sci, header=_with_unit(h3, "MJy/sr"), name="SCI"),
            fits.ImageHDU(err, header=_with_unit(h3, "MJy/sr"), name="ERR"),
            fits.ImageHDU(dq, header=h3, name="DQ"),
        ]
    )
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)


#: MUSE's BUNIT of DATA (STAT: its square), as the ESO pipeline writes it.
MUSE_BUNIT = "10**(-20)*erg/s/cm**2/Angstrom"


def _write_muse_cube(plan, g: ins.Grating, hdr_wcs, path) -> None:
    """Write a MUSE-format cube: PRIMARY + DATA, STAT (variance), 1e-20 erg/s/cm2/A per spaxel, AWAV in Angstrom (air)."""
    sci, err, _, _ = noisy_cube(plan, g.name, flambda=True)
    h3 = _cube_header(fits.Header(hdr_wcs), g)
    h3["CTYPE3"], h3["CUNIT3"] = "AWAV", "Angstrom"
    h3["CRVAL3"], h3["CDELT3"] = g.wmin_um * 1e4, g.dlam_um * 1e4
    data = (sci / 1e-20).astype(np.float32)
    stat = ((err.astype(float) / 1e-20) ** 2).astype(np.float32)
    hdul = fits.HDUList(
        [
            _primary(plan, TELESCOP="ESO-VLT-U4", INSTRUME="MUSE", **{"HIERARCH ESO INS MODE": "WFM-AO-N"}),
            fits.ImageHDU(data, header=_with_unit(h3, MUSE_BUNIT), name="DATA"),
            fits.ImageHDU(stat, header=_with_unit(h3, f"({MUSE_BUNIT})**2"), name="STAT"),
        ]
    )
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)


def write_truth(plan, path) -> None:
    """Write ``<id>_truth.fits``: noiseless line maps per grating and ``CII``.

    Extensions ``<GRATING>_<LINE>`` (erg/s/cm2 per spaxel, on the IFU grid of
    that grating, same pixels and header WCS as the cube) and ``CII`` (Jy km/s
    per pixel on the ALMA grid).
    """
    _, hdr_wcs = ifu_geometry(plan)
    truth = fits.HDUList([_primary(plan, CONTENTS="noiseless truth maps")])
    for grating in plan["ifu"]["gratings"]:
        label = grating.upper()
        for line, m in truth_maps(plan, grating).items():
            th = fits.Header(hdr_wcs)
            th["BUNIT"] = ("erg / (s cm2)", "line flux per spaxel")
            th["LINE"] = line
            th["GRATING"] = label
            truth.append(fits.ImageHDU(m, header=th, name=f"{label}_{line}"))
    cii_map, cii_hdr = cii_truth_map(plan)
    cii_hdr["BUNIT"] = ("Jy km / s", "[C II] flux per pixel")
    truth.append(fits.ImageHDU(cii_map, header=cii_hdr, name="CII"))
    with atomic_path(path) as tmp:
        truth.writeto(tmp)


def _with_unit(h, unit):
    h = h.copy()
    h["BUNIT"] = unit
    return h


def _cube_header(cel_hdr, g: ins.Grating):
    w = WCS(naxis=3)
    cw = WCS(cel_hdr)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN", "WAVE"]
    w.wcs.cunit = ["deg", "deg", "um"]
    w.wcs.crval = [cw.wcs.crval[0], cw.wcs.crval[1], g.wmin_um]
    w.wcs.crpix = [cw.wcs.crpix[0], cw.wcs.crpix[1], 1.0]
    w.wcs.cdelt = [cw.wcs.cdelt[0], cw.wcs.cdelt[1], g.dlam_um]
    w.wcs.radesys = "ICRS"
    w.wcs.specsys = "BARYCENT"
    hdr = w.to_header()
    # astropy writes spectral axes in SI; NIRSpec s3d files use micron
    hdr["CUNIT3"], hdr["CRVAL3"], hdr["CDELT3"] = "um", g.wmin_um, g.dlam_um
    return hdr


# --------------------------------------------------------------------------
# continuum image
# --------------------------------------------------------------------------
def noiseless_image(plan):
    """Noiseless continuum image [MJy/sr] on the image grid (true WCS)."""
    im = plan["image"]
    maps = _region_maps(plan, im["npix"], im["pixscale"], (0.0, 0.0), im["psf_fwhm"], which=("ISM",))
    obs = plan["observed_fluxes"]["ISM"]["HA"]
    cont_ha = obs / (plan["ifu"]["continuum_ew_rest_A"] * (1.0 + plan["z"]))
    lam_ha = ins.LINE_WAVELENGTHS["HA"] * (1 + plan["z"]) * 1e-4
    piv = FILTER_PIVOT_UM[im["filter"]]
    flam = cont_ha * (piv / lam_ha) ** -2.0
    pixar_sr = ((im["pixscale"] * u.arcsec) ** 2).to_value(u.sr)
    return maps["ISM"] * flam * _flambda_to_mjysr(np.array(piv), pixar_sr)


def image_noise(plan, model):
    """Per-pixel white noise [MJy/sr] that puts the 9σ isophote near ``r_ism``.

    The PSF-matched noiseless image is thresholded at the level enclosing an
    area of pi r_ism^2 per component; the white noise is chosen so that this
    level is 9 times the noise of the PSF-matched (smoothed) image.
    """
    im = plan["image"]
    ker_fwhm = np.sqrt(max(plan["ifu"]["psf_fwhm"] ** 2 - im["psf_fwhm"] ** 2, 1e-6))
    from scipy.ndimage import gaussian_filter

    k_pix = ker_fwhm / FWHM_PER_SIGMA / im["pixscale"]
    matched = gaussian_filter(model, k_pix, mode="constant")
    n_pix = int(round(len(plan["components"]) * np.pi * im["r_ism_arcsec"] ** 2 / im["pixscale"] ** 2))
    level = np.sort(matched.ravel())[::-1][n_pix]
    return float(level / 9.0 * 2.0 * np.sqrt(np.pi) * k_pix)


def write_image(plan, path) -> None:
    """Write the continuum image ``<id>_<filter>_i2d.fits`` (SCI in MJy/sr, ERR, WCS)."""
    im = plan["image"]
    model = noiseless_image(plan)
    sigma = image_noise(plan, model)
    rng = _rng(plan["seed"], plan["id"], "image", "noise")
    sci = (model + sigma * rng.standard_normal(model.shape)).astype(np.float32)
    hdr = fits.Header(_celestial_header(plan["ra"], plan["dec"], im["npix"], im["pixscale"]))
    hdr["BUNIT"] = "MJy/sr"
    hdr["PIXAR_SR"] = ((im["pixscale"] * u.arcsec) ** 2).to_value(u.sr)
    inst = "WFC3" if im["filter"] == "F125W" else "NIRCAM"
    tel = "HST" if im["filter"] == "F125W" else "JWST"
    hdul = fits.HDUList(
        [
            _primary(plan, TELESCOP=tel, INSTRUME=inst, FILTER=im["filter"], PSFFWHM=im["psf_fwhm"]),
            fits.ImageHDU(sci, header=hdr, name="SCI"),
            fits.ImageHDU(np.full_like(sci, sigma), header=hdr, name="ERR"),
        ]
    )
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)
