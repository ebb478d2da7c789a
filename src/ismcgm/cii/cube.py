"""ALMA cubes: reading (Jy/beam, beam, FREQ axis), the [C II] velocity axis and flux units.

Velocity axis and units
-----------------------
``nu_line = 1900.5369 GHz / (1 + z)``; ``v = c (1 - nu / nu_line)`` (radio
convention, so ``dv = c dnu / nu_line`` exactly).  Spectra are in Jy
(``sum(w S_nu) / Omega_beam``, ``Omega_beam = pi/(4 ln 2) BMAJ BMIN / pix^2``
pixels); fluxes in Jy km/s; ``F = S dv x 1e-23 x nu_line / c`` erg/s/cm2.
A channel in which any pixel with weight > 0 is NaN is NaN and left out of
the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .. import instrument as ins
from ..io import InputError, _open, _quiet_wcs

_BEAM_FACTOR = math.pi / (4.0 * math.log(2.0))


# ---------------------------------------------------------------------------
# reading the cube
# ---------------------------------------------------------------------------
@dataclass
class AlmaCube:
    """An ALMA [C II] cube in memory.

    Attributes
    ----------
    data : ndarray, shape (n_chan, ny, nx)
        Surface brightness [Jy/beam] (NaN = blank).
    wcs : astropy.wcs.WCS
        Celestial WCS of the (ny, nx) plane.
    freq_hz : ndarray, shape (n_chan,)
        Channel centre frequencies [Hz].
    bmaj, bmin : float
        Beam FWHMs [arcsec].
    bpa : float
        Beam position angle [deg, east of north].
    pixscale : float
        Pixel size [arcsec].
    """

    path: str
    galaxy: str | None
    data: np.ndarray
    wcs: WCS
    freq_hz: np.ndarray
    bmaj: float
    bmin: float
    bpa: float
    pixscale: float
    header: fits.Header = field(repr=False)

    @property
    def beam(self) -> tuple[float, float, float]:
        """(BMAJ [arcsec], BMIN [arcsec], BPA [deg])."""
        return self.bmaj, self.bmin, self.bpa

    @property
    def beam_area_pix(self) -> float:
        """Beam solid angle in pixels: pi / (4 ln 2) BMAJ BMIN / pix^2."""
        return _BEAM_FACTOR * self.bmaj * self.bmin / self.pixscale**2

    @property
    def shape2d(self) -> tuple[int, int]:
        return self.data.shape[1:]

    @property
    def valid(self) -> np.ndarray:
        """Pixels with at least one finite channel."""
        return np.isfinite(self.data).any(axis=0)

    @property
    def channel_width_hz(self) -> float:
        return float(np.median(np.abs(np.diff(self.freq_hz)))) if self.freq_hz.size > 1 else float("nan")

    def nu_line(self, z: float) -> float:
        """Observed [C II] frequency [Hz] at redshift ``z``."""
        return ins.cii_observed_ghz(z) * 1e9

    def velocity(self, z: float) -> np.ndarray:
        """Radio-convention velocity [km/s] of each channel relative to [C II] at ``z``."""
        return ins.C_KMS * (1.0 - self.freq_hz / self.nu_line(z))


def _parse_brightness_unit(bunit):
    if not bunit:
        return None
    text = str(bunit).strip()
    for cand in (text, text.replace("JY", "Jy").replace("BEAM", "beam"), text.lower().replace("jy", "Jy")):
        try:
            return u.Unit(cand, parse_strict="silent")
        except (ValueError, TypeError):
            continue
    return None


def _beam_from_header(hdul, hdu):
    """(bmaj, bmin, bpa) in arcsec/deg from BMAJ/BMIN/BPA or a CASA BEAMS table."""
    for h in (hdu.header, hdul[0].header):
        if "BMAJ" in h and "BMIN" in h:
            return float(h["BMAJ"]) * 3600.0, float(h["BMIN"]) * 3600.0, float(h.get("BPA", 0.0)), "header"
    names = [x.name for x in hdul]
    if "BEAMS" in names:
        tab = hdul["BEAMS"].data
        cols = {c.upper(): c for c in tab.columns.names}
        if "BMAJ" in cols and "BMIN" in cols:
            unit = str(hdul["BEAMS"].header.get("TUNIT1", "arcsec")).strip().lower()
            f = 3600.0 if unit.startswith("deg") else 1.0
            bpa = float(np.median(tab[cols["BPA"]])) if "BPA" in cols else 0.0
            bmaj = float(np.median(tab[cols["BMAJ"]])) * f
            bmin = float(np.median(tab[cols["BMIN"]])) * f
            return bmaj, bmin, bpa, "BEAMS median"
    return None


def read_alma_cube(path, galaxy=None) -> AlmaCube:
    """Read an ALMA [C II] cube.

    The first HDU with >= 3-D data is used; degenerate axes (STOKES) are
    dropped.  Requirements (one-line :class:`ismcgm.io.InputError`
    otherwise): BUNIT convertible to Jy/beam (mJy/beam is rescaled), BMAJ and
    BMIN (degrees; or a CASA ``BEAMS`` table, whose median beam is used), a
    FREQ spectral axis, square pixels, at least one finite voxel.

    Parameters
    ----------
    path : path-like
    galaxy : str, optional
        Galaxy id, for the error messages.

    Returns
    -------
    AlmaCube
    """
    with _open(path, galaxy, "ALMA cube") as hdul:
        hdu = next((h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) >= 3), None)
        if hdu is None:
            raise InputError(galaxy, path, "no 3-D data cube in the file", "give the [C II] cube (RA, Dec, FREQ)")
        hdr = hdu.header
        unit = _parse_brightness_unit(hdr.get("BUNIT"))
        if unit is None or not unit.is_equivalent(u.Jy / u.beam):
            raise InputError(
                galaxy, path, f"BUNIT={hdr.get('BUNIT')!r}, expected Jy/beam",
                "give the cube in Jy/beam (not a moment map, not K) and set BUNIT",
            )
        scale = unit.to(u.Jy / u.beam)
        beam = _beam_from_header(hdul, hdu)
        if beam is None:
            raise InputError(
                galaxy, path, "no BMAJ/BMIN beam keywords (and no BEAMS table)",
                "add BMAJ, BMIN [deg] and BPA [deg] of the restoring beam to the header",
            )
        bmaj, bmin, bpa, _ = beam
        if not (np.isfinite(bmaj) and np.isfinite(bmin) and bmaj > 0 and bmin > 0):
            raise InputError(galaxy, path, f"bad beam BMAJ={bmaj}\" BMIN={bmin}\"", "set positive BMAJ/BMIN in degrees")
        w = _quiet_wcs(hdr)
        if not w.has_celestial:
            raise InputError(galaxy, path, "no celestial (RA/Dec) WCS", "give a cube with RA---/DEC-- axes")
        spec = w.wcs.spec
        ctype = w.wcs.ctype[spec].upper() if spec >= 0 else ""
        if spec < 0 or not ctype.startswith("FREQ"):
            raise InputError(
                galaxy, path, f"no frequency axis (spectral axis: {ctype or 'none'})",
                "export the cube with a FREQ axis in Hz (e.g. CASA exportfits velocity=False)",
            )
        data = np.asarray(hdu.data, dtype=float) * scale
        ndim = data.ndim
        lon, lat = w.wcs.lng, w.wcs.lat
        keep = {spec, lat, lon}
        for i in range(w.naxis):
            if i not in keep and data.shape[ndim - 1 - i] != 1:
                raise InputError(galaxy, path, f"axis {i + 1} ({w.wcs.ctype[i]}) has length {data.shape[ndim - 1 - i]}",
                                 "give a single-Stokes (I) cube")
        # numpy axis of FITS axis i is ndim-1-i; order -> (spec, second celestial, first celestial)
        first, second = sorted((lon, lat))
        order = [ndim - 1 - spec, ndim - 1 - second, ndim - 1 - first]
        others = [a for a in range(ndim) if a not in order]
        data = np.transpose(data, others + order).reshape(data.shape[ndim - 1 - spec],
                                                          data.shape[ndim - 1 - second],
                                                          data.shape[ndim - 1 - first])
        spec_wcs = w.sub([spec + 1])
        fr = np.asarray(spec_wcs.pixel_to_world_values(np.arange(data.shape[0])), dtype=float).ravel()
        fr = fr * u.Unit(spec_wcs.wcs.cunit[0] or "Hz").to(u.Hz)
        cel = w.celestial
        scales = cel.proj_plane_pixel_scales()
        sx, sy = (float(s.to_value(u.arcsec)) for s in scales)
        if abs(sx - sy) > 1e-3 * max(sx, sy):
            raise InputError(galaxy, path, f"non-square pixels ({sx:.4g}\" x {sy:.4g}\")",
                             "regrid the cube to square pixels")
        if not np.isfinite(data).any():
            raise InputError(galaxy, path, "cube is entirely blank (NaN)", "check the imaging; the cube is empty")
        return AlmaCube(str(path), galaxy, data, cel, fr, bmaj, bmin, bpa, sx, hdr.copy())


def check_line_coverage(alma: AlmaCube, z: float, galaxy=None) -> float:
    """Observed [C II] frequency [Hz]; InputError if the cube's band misses it."""
    nu = alma.nu_line(z)
    half = 0.5 * alma.channel_width_hz if np.isfinite(alma.channel_width_hz) else 0.0
    lo, hi = alma.freq_hz.min() - half, alma.freq_hz.max() + half
    if not (lo <= nu <= hi):
        raise InputError(
            galaxy if galaxy is not None else alma.galaxy, alma.path,
            f"[C II] at z={z:.4f} ({nu / 1e9:.3f} GHz) is outside the cube's band {lo / 1e9:.3f}-{hi / 1e9:.3f} GHz",
            "check the redshift and give the cube of the spectral window with [C II]",
        )
    return nu


def jykms_to_cgs(flux_jykms, nu_obs_hz):
    """Jy km/s -> erg/s/cm2: ``F = S dv x 1e-23 x nu_obs / c``."""
    return np.asarray(flux_jykms, dtype=float) * 1e-23 * np.asarray(nu_obs_hz, dtype=float) / ins.C_KMS


def cgs_to_jykms(flux_cgs, nu_obs_hz):
    """erg/s/cm2 -> Jy km/s (inverse of :func:`jykms_to_cgs`)."""
    return np.asarray(flux_cgs, dtype=float) / (1e-23 * np.asarray(nu_obs_hz, dtype=float) / ins.C_KMS)
