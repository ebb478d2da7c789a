"""Checks of the sample table's files that need only their FITS headers.

Run by the Snakefile (through :func:`ismcgm.workflow_config.check_samples`)
before any job, so that a wrong file in a column, a truncated file, a wrong
spectral axis or a position outside the field stops the run at once with one
line naming the galaxy, the file and the fix.  Only headers are read (and the
file size): the checks cost milliseconds per file.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

import astropy.units as u

from . import instrument as ins
from . import instruments
from .errors import InputError
from .imaging import image_noise
from .io import CUBE_FORMATS, _image_hdu, check_unit, image_unit_factor
from .samples import galaxy_gratings, parse_components
from .wcsutil import pixscale_arcsec

_WAVE_TYPES = ("WAVE", "AWAV")
_SPECTRAL_TYPES = (*_WAVE_TYPES, "FREQ", "ENER", "WAVN", "VRAD", "VOPT", "ZOPT", "VELO", "BETA")
_REDOWNLOAD = "re-download or regenerate it (the file is incomplete)"


def _open_headers(gid, path):
    """The file's HDU list with every header read; InputError for an unreadable or truncated file."""
    from astropy.io import fits

    size = os.path.getsize(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=False)
            hdul.readall()
    except (OSError, ValueError) as exc:
        raise InputError(gid, path, f"not a readable FITS file ({str(exc).splitlines()[0]})",
                         "re-download or regenerate it") from None
    need = max(h.fileinfo()["datLoc"] + h.fileinfo()["datSpan"] for h in hdul)
    if need > size or size % 2880:
        hdul.close()
        raise InputError(gid, path, f"truncated FITS file ({size} bytes; its headers need {need})", _REDOWNLOAD)
    return hdul


def _celestial(header):
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).celestial


def _inside(wcs, shape, ra, dec) -> bool:
    """Whether (ra, dec) falls on the pixel grid of ``shape`` (ny, nx)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            x, y = wcs.world_to_pixel_values(float(ra), float(dec))
        except Exception:  # noqa: BLE001  (wcslib: no solution for a point far off the projection)
            return False
    x, y = float(x), float(y)
    return bool(np.isfinite(x) and np.isfinite(y) and -0.5 <= x <= shape[1] - 0.5 and -0.5 <= y <= shape[0] - 0.5)


def _spectral_axis(gid, path, hdr) -> int:
    """1-based index of the spectral axis of a cube's SCI header, which must be a wavelength."""
    axes = [i for i in range(1, int(hdr.get("NAXIS", 0)) + 1)
            if str(hdr.get(f"CTYPE{i}", "")).upper()[:4] in _SPECTRAL_TYPES]
    if not axes:
        raise InputError(gid, path, "SCI WCS has no spectral axis (no CTYPEn = 'WAVE')",
                         "give a cube whose third WCS axis is WAVE in micron (the stage-3 _s3d.fits cube)")
    i = axes[0]
    ctype = str(hdr[f"CTYPE{i}"])
    if ctype.upper()[:4] not in _WAVE_TYPES:
        raise InputError(gid, path, f"CTYPE{i} = {ctype!r}: a NIRSpec cube's spectral axis is wavelength",
                         f"set CTYPE{i} = 'WAVE' and CUNIT{i} = 'um' with wavelength values (or give the "
                         "original _s3d.fits cube)")
    return i


def _wave_range_um(gid, path, hdr, axis):
    """(first, last, step) channel wavelength [micron] from the header WCS."""
    import astropy.units as u
    from astropy.wcs import WCS, FITSFixedWarning

    unit = str(hdr.get(f"CUNIT{axis}", "")).strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(hdr).sub([axis])
        n = int(hdr[f"NAXIS{axis}"])
        wave = np.asarray(w.pixel_to_world_values(np.array([0.0, n - 1.0])), float).ravel()
        wave = wave * u.Unit(w.wcs.cunit[0]).to(u.um)
    except Exception as exc:  # noqa: BLE001  (wcslib / unit errors of a malformed header are input errors)
        raise InputError(gid, path, f"unreadable spectral WCS (CTYPE{axis}/CUNIT{axis} = "
                         f"{hdr.get(f'CTYPE{axis}')!r}/{unit!r}: {str(exc).splitlines()[0]})",
                         f"set CTYPE{axis} = 'WAVE', CUNIT{axis} = 'um' and wavelength values") from None
    return float(wave.min()), float(wave.max()), unit, max(n - 1, 1)


def _covered(lo, hi, g) -> float:
    """Fraction of [lo, hi] inside grating ``g``'s coverage."""
    gr = ins.get_grating(g)
    return max(0.0, min(hi, gr.wmax_um) - max(lo, gr.wmin_um)) / max(hi - lo, 1e-12)


def _match(lo, hi, g) -> float:
    """Intersection over union of [lo, hi] and grating ``g``'s coverage (1 = the same range)."""
    gr = ins.get_grating(g)
    inter = max(0.0, min(hi, gr.wmax_um) - max(lo, gr.wmin_um))
    return inter / max(max(hi, gr.wmax_um) - min(lo, gr.wmin_um), 1e-12)


def _unit_of_values(lo_um, hi_um, unit, grating):
    """The wavelength unit in which the header values fall in the grating's coverage (None if none does)."""
    import astropy.units as u

    try:
        to_um = u.Unit(unit).to(u.um)
    except (ValueError, TypeError):
        return None
    for cand in ("um", "nm", "Angstrom", "m"):
        f = u.Unit(cand).to(u.um) / to_um
        if cand != unit and _covered(lo_um * f, hi_um * f, grating) >= 0.5:
            return cand
    return None


def check_cube(gid, table, grating, path, row) -> None:
    """Header checks of one cube given in column ``cube_<grating>`` (a setup of :mod:`ismcgm.instruments`)."""
    col = instruments.cube_column(grating)
    label = grating.upper()
    setup = instruments.get_setup(grating)
    fmt = CUBE_FORMATS[setup.reader]
    with _open_headers(gid, path) as hdul:
        names = [h.name for h in hdul]
        for ext in (fmt.data, fmt.err):
            if ext not in names:
                raise InputError(gid, path, f"no {ext} extension", f"give the {fmt.description}")
        prim, hdr = hdul[0].header, hdul[fmt.data].header
        instrume = str(prim.get("INSTRUME", hdr.get("INSTRUME", setup.instrument))).strip().upper()
        if instrume != setup.instrument:
            raise InputError(gid, path, f"INSTRUME = {instrume!r}, not a {setup.instrument_label} cube (column {col} "
                             f"of {table})", f"give the galaxy's {setup.instrument_label} {label} cube "
                             f"({fmt.description})")
        head_grating = str(prim.get("GRATING", hdr.get("GRATING", ""))).strip().upper()
        if head_grating and head_grating != label:
            other = f"cube_{head_grating.lower()}"
            raise InputError(gid, path, f"header GRATING = {head_grating!r} but the file is in column {col} of {table}",
                             f"move it to column {other}" if other in instruments.CUBE_COLUMNS
                             else f"give the {label} cube")
        filt = str(prim.get("FILTER", hdr.get("FILTER", ""))).strip().upper()
        if fmt.filter_keyword and filt and filt != setup.band:
            raise InputError(gid, path, f"header FILTER = {filt!r}; a {label} cube has {setup.band} "
                             f"(column {col} of {table})", f"give the {label}/{setup.band} cube")
        for ext in (fmt.data, fmt.err):
            check_unit(gid, path, hdul[ext].header, ext, u.Unit(setup.flux_unit) ** fmt.err_power(ext))
        axis = _spectral_axis(gid, path, hdr)
        lo, hi, unit, nstep = _wave_range_um(gid, path, hdr, axis)
        if _covered(lo, hi, grating) < 0.5:
            gr = ins.get_grating(grating)
            rng = f"{lo:.4g}-{hi:.4g} um (CUNIT{axis} = {unit!r})"
            cover = f"{label} covers {gr.wmin_um:g}-{gr.wmax_um:g} um"
            others = sorted((g for g in ins.GRATINGS if g != grating and _covered(lo, hi, g) >= 0.5),
                            key=lambda g: -_match(lo, hi, g))
            if others:
                fix = f"swap the paths: this is a {others[0].upper()[:4]} cube, it belongs in column cube_{others[0]}"
            elif (real := _unit_of_values(lo, hi, unit, grating)) is not None:
                fix = f"CUNIT{axis} must be the unit of the CRVAL{axis}/CDELT{axis} values: set CUNIT{axis} = {real!r}"
            else:
                fix = f"give the galaxy's {label} cube with a wavelength axis in micron"
            raise InputError(gid, path, f"wavelengths {rng} in column {col}, but {cover}", fix)
        same_band = [g for g, s in instruments.SETUPS.items() if s.band == setup.band]
        if not head_grating and len(same_band) > 1:
            step = (hi - lo) / nstep
            guess = min(same_band, key=lambda g: abs(np.log(step / ins.get_grating(g).dlam_um)))
            if guess != grating and abs(np.log(step / ins.get_grating(grating).dlam_um)) > np.log(2.0):
                raise InputError(gid, path, f"channel width {step:.3g} um is that of {guess.upper()}, not {label} "
                                 f"(no GRATING keyword)", f"move it to column cube_{guess} (or set GRATING)")
        wcs = _celestial(hdr)
        shape = (int(hdr.get("NAXIS2", 0)), int(hdr.get("NAXIS1", 0)))
        if not _inside(wcs, shape, row["ra"], row["dec"]):
            raise InputError(gid, path, f"the galaxy position ra, dec = {row['ra']}, {row['dec']} lies outside "
                             f"the cube's field", "check ra/dec in the table and that the cube is this galaxy's")


def check_image(gid, table, path, row) -> None:
    """Header checks of the continuum image: readable, complete, celestial WCS, a unit convertible to MJy/sr
    (:func:`ismcgm.io.image_unit_factor`), galaxy inside it."""
    with _open_headers(gid, path) as hdul:
        hdu = _image_hdu(hdul)
        hdr = hdu.header
        if int(hdr.get("NAXIS", 0)) != 2:
            raise InputError(gid, path, "no 2-D SCI image", "give the _i2d.fits image with a SCI extension")
        wcs = _celestial(hdr)
        if wcs.naxis != 2:
            raise InputError(gid, path, "image has no celestial WCS", "give an image with RA/Dec WCS keywords")
        image_unit_factor(gid, path, hdr, hdul[0].header if hdu is not hdul[0] else None)
        shape = (int(hdr["NAXIS2"]), int(hdr["NAXIS1"]))
        points = [("the galaxy position", (row["ra"], row["dec"]))]
        if row["merger"]:
            points += [(f"merger component {s}", p) for s, p in zip("ab", parse_components(row["components"]))]
        for what, (ra, dec) in points:
            if not _inside(wcs, shape, ra, dec):
                fix = ("check the components cell (ra_a,dec_a;ra_b,dec_b in degrees)" if what.startswith("merger")
                       else "check ra/dec in the table and that the image is this galaxy's")
                raise InputError(gid, path, f"{what} ra, dec = {ra}, {dec} lies outside the image", fix)


def check_row(gid, row, table) -> list[str]:
    """Every header check of one sample row; returns warnings (one line each)."""
    for g in galaxy_gratings(row):
        check_cube(gid, table, g, row[f"cube_{g}"], row)
    check_image(gid, table, row["image"], row)
    if row.get("alma_cube"):
        _open_headers(gid, row["alma_cube"]).close()
    out = []
    if float(row["image_psf_fwhm"]) > float(row["ifu_psf_fwhm"]):
        out.append(f"galaxy {gid}: {table}: image_psf_fwhm {row['image_psf_fwhm']} > ifu_psf_fwhm "
                   f"{row['ifu_psf_fwhm']}: the image cannot be PSF-matched to the IFU and is used at its own "
                   "resolution (masks and alignment slightly smoother) -- fix: use a sharper image if you have one")
    return out


# --------------------------------------------------------------------------
# checks that need the data (run by the align job, the first to read it)
# --------------------------------------------------------------------------
#: The strong lines that must appear where ``z`` puts them (SPEC section 0).
REDSHIFT_LINES = ("HA", "OIII5007")


def _aperture_spectrum(cube, ra, dec, radius_arcsec):
    """Summed spectrum and its variance in a circular aperture about (ra, dec) (the nominal spectrum)."""
    x0, y0 = cube.wcs.world_to_pixel_values(float(ra), float(dec))
    yy, xx = np.indices(cube.sci.shape[1:])
    ap = (xx - float(x0)) ** 2 + (yy - float(y0)) ** 2 <= (radius_arcsec / pixscale_arcsec(cube.wcs)) ** 2
    sci = np.where(np.isfinite(cube.sci), cube.sci, 0.0)[:, ap].sum(axis=1)
    var = np.where(np.isfinite(cube.err), cube.err, 0.0)[:, ap] ** 2
    return sci, var.sum(axis=1)


def line_snr_scan(wave_um, spec, var, half_width_kms=600.0, continuum_channels=151):
    """S/N of the continuum-subtracted flux in a +-``half_width_kms`` window centred on every channel."""
    from scipy import ndimage

    good = np.isfinite(spec) & np.isfinite(var) & (var > 0)
    cont = ndimage.median_filter(np.where(good, spec, np.nanmedian(spec[good]) if good.any() else 0.0),
                                 size=continuum_channels, mode="nearest")
    resid = np.where(good, spec - cont, 0.0)
    v = np.where(good, var, 0.0)
    dv = np.gradient(wave_um) / wave_um * 299792.458
    half = max(1, int(round(half_width_kms / float(np.median(dv)))))
    kern = np.ones(2 * half + 1)
    num = np.convolve(resid, kern, mode="same")
    den = np.sqrt(np.convolve(v, kern, mode="same"))
    snr = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    snr[: half + 1] = snr[-half - 1:] = 0.0  # windows cut by the band edges
    return snr


def check_redshift(cubes, row, *, radius_arcsec=0.5, min_snr=3.0, strong_snr=10.0):
    """Check that Halpha or [O III]5007 appears at ``z`` in the galaxy's nominal spectrum.

    The spectrum is the sum over a ``radius_arcsec`` aperture about the
    galaxy position in every cube.  The redshift passes when either line
    reaches ``min_snr`` in a +-600 km/s window at ``z``.  Otherwise, when the
    spectra show a line of S/N >= ``strong_snr`` elsewhere, ``z`` is wrong and
    an :class:`InputError` names the table value and the redshift that line
    suggests.  When no strong line is seen anywhere the galaxy is too faint to
    tell: a warning (one line) is returned instead and the run goes on.

    Returns
    -------
    str or None
        The warning line, if any.
    """
    z, gid = float(row["z"]), row["id"]
    best, peak = -np.inf, (-np.inf, None, None)
    for cube in cubes:
        spec, var = _aperture_spectrum(cube, row["ra"], row["dec"], radius_arcsec)
        snr = line_snr_scan(cube.wave_um, spec, var)
        for line in REDSHIFT_LINES:
            lam = ins.LINE_WAVELENGTHS[line] * (1 + z) * 1e-4
            if cube.wave_um.min() < lam < cube.wave_um.max():
                best = max(best, float(snr[int(np.argmin(np.abs(cube.wave_um - lam)))]))
        i = int(np.argmax(snr))
        if snr[i] > peak[0]:
            peak = (float(snr[i]), float(cube.wave_um[i]), cube.path)
    if best >= min_snr:
        return None
    if peak[0] >= strong_snr and peak[0] > 3 * max(best, 1.0):
        zs = {line: peak[1] / (ins.LINE_WAVELENGTHS[line] * 1e-4) - 1 for line in REDSHIFT_LINES}
        raise InputError(gid, peak[2], f"no Halpha or [O III]5007 at z = {z:g} (S/N < {min_snr:g}), but a line of "
                         f"S/N {peak[0]:.0f} at {peak[1]:.4f} um (Halpha at z = {zs['HA']:.3f} or [O III] at "
                         f"z = {zs['OIII5007']:.3f})", "correct z in the sample table")
    return (f"galaxy {gid}: neither Halpha nor [O III]5007 reaches S/N {min_snr:g} at z = {z:g} and no strong line "
            "is seen elsewhere: the redshift cannot be verified")


def check_image_source(image, row, *, radius_arcsec=0.3, min_snr=5.0) -> None:
    """The continuum image must show a source at the galaxy position (aperture S/N >= ``min_snr``).

    For a merger every component position is checked (the table's ``ra``,
    ``dec`` is then the midpoint, where there may be no light at all).
    """
    gid = row["id"]
    med, std = image_noise(image.data)
    positions = [(float(row["ra"]), float(row["dec"]))]
    if _is_true(row.get("merger", False)) and str(row.get("components", "")).strip():
        positions = parse_components(row["components"])
    yy, xx = np.indices(image.data.shape)
    r_pix = radius_arcsec / pixscale_arcsec(image.wcs)
    for ra, dec in positions:
        x0, y0 = image.wcs.world_to_pixel_values(ra, dec)
        ap = ((xx - float(x0)) ** 2 + (yy - float(y0)) ** 2 <= r_pix**2) & np.isfinite(image.data)
        snr = float((image.data[ap] - med).sum() / (std * np.sqrt(ap.sum()))) if ap.any() and std > 0 else 0.0
        if not snr >= min_snr:
            where = "galaxy position" if len(positions) == 1 else f"component position ({ra:.6f}, {dec:.6f})"
            raise InputError(gid, image.path, f"no source in the image at the {where} (aperture S/N {snr:.1f} "
                             f"< {min_snr:g} within {radius_arcsec:g}\")",
                             "check that the image is this galaxy's and its WCS (or ra/dec in the table)")


def _is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def check_shift(shift, row, paths, max_shift_arcsec) -> None:
    """A fitted alignment shift above ``alignment.max_shift_arcsec`` means cube and image disagree."""
    s = float(np.hypot(shift.shift_ra_arcsec, shift.shift_dec_arcsec))
    if s > max_shift_arcsec:
        raise InputError(row["id"], ", ".join(map(str, paths)),
                         f"alignment shift {s:.2f}\" exceeds alignment.max_shift_arcsec = {max_shift_arcsec:g}\" "
                         "(cube and image of different objects?)",
                         "check that the cubes and the image are this galaxy's (or raise alignment.max_shift_arcsec)")
