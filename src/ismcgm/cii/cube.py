"""ALMA cubes: reading (Jy/beam, beam, FREQ axis), the [C II] velocity axis and flux units.

Reading
-------
:func:`read_alma_cube` reads with ``spectral-cube`` (``SpectralCube.read``:
WCS of any projection, spectral axis first, Stokes I of a STOKES axis, BUNIT
parsing, beams through ``radio-beam`` from BMAJ/BMIN/BPA or a CASA ``BEAMS``
table) and then brings the cube to ascending frequency (``cube[::-1]``, a
spectral-cube slice that also reverses the WCS).  What stays the workflow's
own, because it is a choice of this analysis rather than reading: the
frequency axis is required (a velocity axis would need the cube's rest
frequency to mean [C II]); a per-channel beam table is summarised by the
median BMAJ, BMIN and BPA (``radio-beam``'s ``common_beam`` is the smallest
beam containing every channel's, a different quantity that would change the
beam area and so the fluxes); square pixels and the all-blank check.  On the
mock cubes the result is bit for bit that of the hand-written reader it
replaced (data, frequencies, beam, pixel scale).

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
import warnings
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .. import instrument as ins
from ..io import InputError, _open

_BEAM_FACTOR = math.pi / (4.0 * math.log(2.0))
_SPECTRAL_CTYPES = ("FREQ", "VRAD", "VOPT", "VELO", "WAVE", "AWAV", "ZOPT", "ENER", "WAVN", "BETA")


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


def _median_beam(cube):
    """(bmaj, bmin, bpa) [arcsec, arcsec, deg]: the beam, or the per-channel medians of a BEAMS table."""
    beams = getattr(cube, "beams", None)
    if beams is not None:  # VaryingResolutionSpectralCube (CASA per-channel beams)
        return (float(np.median(beams.major.to_value(u.arcsec))), float(np.median(beams.minor.to_value(u.arcsec))),
                float(np.median(beams.pa.to_value(u.deg))))
    beam = cube.beam
    return float(beam.major.to_value(u.arcsec)), float(beam.minor.to_value(u.arcsec)), float(beam.pa.to_value(u.deg))


def _spectral_cube(hdul, index, galaxy, path):
    """``SpectralCube.read`` of HDU ``index`` and its (median) beam; one-line errors for what it cannot use."""
    # imported here: spectral-cube pulls in dask; only the jobs that read an ALMA cube pay for it
    from spectral_cube import SpectralCube
    from spectral_cube.utils import NoBeamError

    try:
        cube = SpectralCube.read(hdul, hdu=index, format="fits")
    except Exception as exc:  # noqa: BLE001  (spectral-cube raises several types for a malformed cube)
        raise InputError(galaxy, path, f"spectral-cube cannot read the cube ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})",
                         "give a (RA, Dec, FREQ[, STOKES]) cube as CASA exportfits writes it") from None
    if not cube.unit.is_equivalent(u.Jy / u.beam):
        raise InputError(
            galaxy, path, f"BUNIT={hdul[index].header.get('BUNIT')!r}, expected Jy/beam",
            "give the cube in Jy/beam (not a moment map, not K) and set BUNIT",
        )
    try:
        bmaj, bmin, bpa = _median_beam(cube)
    except NoBeamError:
        raise InputError(
            galaxy, path, "no BMAJ/BMIN beam keywords (and no BEAMS table)",
            "add BMAJ, BMIN [deg] and BPA [deg] of the restoring beam to the header",
        ) from None
    if not (np.isfinite(bmaj) and np.isfinite(bmin) and bmaj > 0 and bmin > 0):
        raise InputError(galaxy, path, f"bad beam BMAJ={bmaj}\" BMIN={bmin}\"", "set positive BMAJ/BMIN in degrees")
    if not cube.wcs.has_celestial:
        raise InputError(galaxy, path, "no celestial (RA/Dec) WCS", "give a cube with RA---/DEC-- axes")
    return cube, (bmaj, bmin, bpa)


def read_alma_cube(path, galaxy=None) -> AlmaCube:
    """Read an ALMA [C II] cube with ``spectral-cube`` (beams through ``radio-beam``), in ascending frequency.

    The first HDU with >= 3-D data is used.  ``spectral_cube.SpectralCube``
    reads the WCS (any projection, e.g. CASA's SIN), puts the spectral axis
    first, keeps Stokes I of a cube with a STOKES axis, parses BUNIT and the
    beam: BMAJ/BMIN/BPA keywords or a CASA ``BEAMS`` table (per-channel beams,
    whose median is used).  A cube stored in descending frequency (as CASA
    often writes it) is reversed, so that the results do not depend on the
    storage order.  Requirements (one-line :class:`ismcgm.io.InputError`
    otherwise): BUNIT convertible to Jy/beam (mJy/beam is rescaled), a beam,
    a FREQ spectral axis, square pixels, at least one finite voxel.

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
        index = next((i for i, h in enumerate(hdul) if h.data is not None and getattr(h.data, "ndim", 0) >= 3), None)
        if index is None:
            raise InputError(galaxy, path, "no 3-D data cube in the file", "give the [C II] cube (RA, Dec, FREQ)")
        hdr = hdul[index].header
        spec_types = [str(hdr.get(f"CTYPE{i}", "")) for i in range(1, int(hdr.get("NAXIS", 0)) + 1)]
        ctype = next((t for t in spec_types if t.upper()[:4] in _SPECTRAL_CTYPES), "")
        if not ctype.upper().startswith("FREQ"):
            raise InputError(
                galaxy, path, f"no frequency axis (spectral axis: {ctype or 'none'})",
                "export the cube with a FREQ axis in Hz (e.g. CASA exportfits velocity=False)",
            )
        with warnings.catch_warnings():
            # FITSFixedWarning, StokesWarning ("returning ... I component"), astropy's COPY_IF_NEEDED in spectral-cube
            warnings.simplefilter("ignore")
            cube, beam = _spectral_cube(hdul, index, galaxy, path)
            fr = np.asarray(cube.spectral_axis.to_value(u.Hz), dtype=float)
            if fr.size > 1 and fr[-1] < fr[0]:  # canonical order: ascending frequency
                cube = cube[::-1]
                fr = np.asarray(cube.spectral_axis.to_value(u.Hz), dtype=float)
            data = np.asarray(cube.unmasked_data[:].value, dtype=float)
        bmaj, bmin, bpa = beam
        scale = cube.unit.to(u.Jy / u.beam)
        if scale != 1.0:
            data = data * scale
        cel = cube.wcs.celestial
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
