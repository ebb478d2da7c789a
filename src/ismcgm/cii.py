"""[C II] 158 um fluxes of the ISM and CGM regions from ALMA cubes (SPEC section 11, paper Sect. 5.3).

Pipeline for one galaxy (:func:`measure_galaxy`)
------------------------------------------------
1. :func:`read_alma_cube` reads the cube (Jy/beam, BMAJ/BMIN/BPA, a FREQ axis).
2. :func:`reproject_masks` carries the IFU masks (``ISM``, ``CGM`` or
   ``ISM_A`` ... ``CGM_B``) onto the ALMA pixel grid through the sky
   coordinates of both WCSs.
3. :func:`extract_cii` sums ``weights x cube`` per channel and divides by the
   beam area in pixels (Jy/beam -> Jy), on a radio-convention velocity axis
   around the redshifted line.
4. :func:`fit_cii` fits one or two Gaussians (plus an optional constant,
   off by default -- see below) with ``lmfit``; the flux is the sum of the
   Gaussian integrals [Jy km/s], converted to erg/s/cm2 by
   :func:`jykms_to_cgs`.
5. :func:`mc_cii` gives the Monte Carlo error with beam-correlated noise
   (below); :func:`analytic_errors` gives analytic alternatives.
6. :func:`transfer_matrix_from_cube` and :func:`spill_corrected` undo the
   beam spill between the regions (below).
7. :func:`cii_ratio_table` forms F[C II]/F(Ha, dust-corrected) per region
   and Delta log(Ha/Hb)_CGM-ISM for Fig. 6.

Beam spill: [C II] at the IFU resolution
----------------------------------------
[C II] is measured at the ALMA beam (~0.3-0.4"), Ha at the IFU PSF
(~0.2"): through the same masks the beam moves ISM [C II] into the CGM
mask (and CGM [C II] out of it) while Ha stays sharp, so even lines
distributed alike would give a [C II]/Ha higher in the CGM than in the ISM
(+0.29 dex on the mock with no injected shift).  Degrading Ha to the beam
would remove that bias but dilute a real ISM/CGM difference (on the default
mock an injected +0.30 dex became +0.19).  Instead the spill is undone with
a transfer matrix, the "geometric transfer matrix" of partial-volume
correction: each region's [C II] is taken to follow the Ha morphology
*inside* that region, with its own [C II]/Ha; ``T[m, r]`` is the fraction
of region ``r``'s emission that the beam puts into mask ``m``
(:func:`transfer_matrix`: the continuum-subtracted Ha map of the IFU cube,
:func:`ismcgm.masks.line_map`, restricted to ``r``, convolved with the
Gaussian kernel of covariance ``C_beam - C_psf`` -- :func:`matching_kernel`,
sky covariances turned into pixels through the WCS, so a rotated IFU grid
is handled -- and summed over ``m``).  The measured fluxes are ``C = T
C_native``, so ``C_native = T^-1 C`` (:func:`spill_corrected`), with errors
propagated to first order.  On the noiseless default mock this recovers
the injected +0.30 dex as +0.28 (median over components; raw +0.47).
``CII_HA`` uses ``C_native``; the measured [C II] fluxes are kept as they
are (``cii_flux``), the native ones are ``cii_flux_native``.  The
validation's ``true_shift`` goes through the same correction with the
truth Ha map.

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

Velocity axis and units
-----------------------
``nu_line = 1900.5369 GHz / (1 + z)``; ``v = c (1 - nu / nu_line)`` (radio
convention, so ``dv = c dnu / nu_line`` exactly).  Spectra are in Jy
(``sum(w S_nu) / Omega_beam``, ``Omega_beam = pi/(4 ln 2) BMAJ BMIN / pix^2``
pixels); fluxes in Jy km/s; ``F = S dv x 1e-23 x nu_line / c`` erg/s/cm2.
A channel in which any pixel with weight > 0 is NaN is NaN and left out of
the fit.

Noise and Monte Carlo errors
----------------------------
Interferometric noise is correlated over the synthesized beam, so the
per-pixel rms summed in quadrature over an aperture underestimates the
error by about ``sqrt(beam area in pixels)``.

* Per-channel rms (:func:`estimate_channel_rms`): sigma-clipped standard
  deviation of the *signal-free* pixels of each channel -- finite pixels
  farther than one BMAJ from every mask region of the galaxy.  ``rms_mode=
  'global'`` uses instead the median of the line-free channels
  (``|v| > line_free_kms``) for all channels.
* Realisations (:func:`mc_cii`): nominal extracted spectrum + the
  extraction of a noise cube made of white noise convolved with the beam
  kernel (``astropy.convolution.Gaussian2DKernel`` with the BMAJ/BMIN
  sigmas; the position angle is turned into the kernel's angle from the
  pixel +x axis through the WCS -- for the usual north-up grid with x
  growing west that is ``theta = 90 deg + BPA``), rescaled per channel so
  that its per-pixel rms equals the measured rms.  The noise is drawn on a
  cutout around the region padded by the kernel half-size, so the
  convolved noise is exact (no boundary) inside the region.
  ``mode='cube'`` is the literal draw (convolve every channel of the white
  cutout); ``mode='fast'`` (default) uses ``sum_p w_p (n * K)_p =
  sum_q n_q (w (x) K)_q`` -- the same white-noise numbers against the
  beam-correlated weights -- and gives the *same* realisations to rounding.
  Each realisation has its own generator, seeded with
  ``numpy.random.SeedSequence([seed, h(component), h(region), h('alma'),
  h(str(i))])`` with ``h`` a SHA-256 hash, so results do not depend on
  batching.  Every realisation is fitted like the nominal spectrum
  (starting from the nominal best fit); flux = median, error = standard
  deviation.  ``kernel_scale`` scales the kernel FWHMs (1 = the beam, as in
  the brief and the mock; ``'auto'`` matches the correlation area measured
  from the data).
* Analytic alternatives (:func:`analytic_errors`), per channel in Jy, each
  propagated to the flux through the covariance of a fit of the nominal
  spectrum with those errors: ``naive`` (independent pixels,
  ``rms sqrt(sum w^2) / Omega``), ``beam`` (naive x sqrt(Omega_pix), the
  classical "number of beams" correction, exact for apertures much larger
  than a beam whose noise correlation area is one beam) and ``acf``
  (``Var = rms^2 / Omega^2 sum_d rho(d) (w * w)(d)`` with the noise
  autocorrelation ``rho`` measured from the signal-free pixels,
  :func:`noise_autocorrelation`).

Fit choices
-----------
Centres are kept within +-300 km/s of systemic and dispersions between half
a channel and 400 km/s (``v_max_offset``, ``sigma_max``).  Without a
starting point the fit is started from a few (centre, width) pairs and the
lowest chi^2 is kept; MC realisations start from the nominal best fit.  The
constant is fixed at 0 by default (``continuum=False``): ALMA cubes are
continuum-subtracted in the uv plane, and on the mock (+-720 km/s bands,
lines with sigma up to 200 km/s) a free constant is degenerate with the line
wings -- the flux pulls against the truth then have std 1.19 with heavy
tails (MAD-std 0.63) instead of 0.92 (MAD-std 1.11) without it.
``continuum=True`` restores the "Gaussian(s) + constant" model for cubes
with continuum left in.

Detection
---------
A region is detected when ``flux / flux_err >= detect_snr`` (default 3).
Otherwise the 3-sigma upper limit is 3 x the MC standard deviation of the
spectrum integrated over ``ul_window_kms`` (default 300 km/s) centred on
the systemic velocity (the analogue of the three-channel sum of SPEC
section 5 for a ~300 km/s wide [C II] line).

Simulation comparison
---------------------
:func:`sim_profiles` measures simulated [C II] and Ha maps (same units per
pixel, kpc pixel scale): the ratio in ``r < 3`` kpc and ``3 < r < 15`` kpc,
and the annular ratio profile normalised at 1.5 kpc.
:func:`mock_sim_maps` makes SYNTHETIC stand-ins (no SERRA maps are
redistributable); they are labelled SYNTHETIC in every file and table.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from . import instrument as ins
from .io import InputError, _open, _quiet_wcs, atomic_path

#: Column order of the per-region [C II] measurement table (:func:`measure_galaxy`).
CII_COLUMNS = (
    "id",
    "component",
    "region",
    "line",
    "flux",
    "flux_err",
    "snr",
    "detected",
    "upper_limit",
    "flux_jykms",
    "flux_jykms_err",
    "flux_nominal_jykms",
    "err_naive_jykms",
    "err_beam_jykms",
    "err_acf_jykms",
    "velocity_kms",
    "sigma_kms",
    "n_gauss",
    "nu_obs_hz",
    "beam_area_pix",
    "coverage",
    "rms_jybeam",
    "corr_area_pix",
    "kernel_scale",
    "n_mc",
)

#: Columns of :func:`cii_ratio_table` (the first ten are the contract).
RATIO_TABLE_COLUMNS = (
    "id",
    "component",
    "region",
    "cii_flux",
    "cii_flux_err",
    "detected",
    "cii_ha",
    "cii_ha_err",
    "delta_balmer",
    "delta_balmer_limit",
    "cii_upper_limit",
    "ha_flux",
    "ha_flux_err",
    "cii_flux_native",
    "cii_flux_native_err",
    "cii_ha_p16",
    "cii_ha_p84",
)

#: Label of every synthetic simulation product.
SIM_LABEL = "SYNTHETIC simulation-like maps generated by ismcgm.cii.mock_sim_maps -- not SERRA, not real"

_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
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
    """(component, region) of a mask extension: ``ISM`` -> (id, ISM), ``CGM_B`` -> (id_b, CGM)."""
    base, _, suffix = name.partition("_")
    return (f"{galaxy}_{suffix.lower()}" if suffix else galaxy), base.upper()


# ---------------------------------------------------------------------------
# extraction and fitting
# ---------------------------------------------------------------------------
@dataclass
class CiiSpectrum:
    """An extracted [C II] spectrum: ``flux_jy`` vs ``velocity`` [km/s] (channel order)."""

    velocity: np.ndarray
    flux_jy: np.ndarray
    nu_line_hz: float
    dv_kms: float


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


def extract_cii(alma: AlmaCube, weights, z: float, galaxy=None) -> CiiSpectrum:
    """[C II] spectrum [Jy] of one region: ``sum(w x cube) / beam_area_pix`` per channel.

    Parameters
    ----------
    alma : AlmaCube
    weights : ndarray (ny, nx)
        Fractional coverage weights (:func:`reproject_masks`).
    z : float
        Systemic redshift (defines the velocity axis).
    """
    nu = check_line_coverage(alma, z, galaxy)
    w = np.asarray(weights, dtype=float)
    sel = w > 0
    vals = alma.data[:, sel]
    spec = np.nansum(vals * w[sel], axis=1) / alma.beam_area_pix
    spec[~np.isfinite(vals).all(axis=1)] = np.nan
    v = ins.C_KMS * (1.0 - alma.freq_hz / nu)
    dv = ins.C_KMS * alma.channel_width_hz / nu
    return CiiSpectrum(v, spec, nu, float(dv))


def jykms_to_cgs(flux_jykms, nu_obs_hz):
    """Jy km/s -> erg/s/cm2: ``F = S dv x 1e-23 x nu_obs / c``."""
    return np.asarray(flux_jykms, dtype=float) * 1e-23 * np.asarray(nu_obs_hz, dtype=float) / ins.C_KMS


def cgs_to_jykms(flux_cgs, nu_obs_hz):
    """erg/s/cm2 -> Jy km/s (inverse of :func:`jykms_to_cgs`)."""
    return np.asarray(flux_cgs, dtype=float) / (1e-23 * np.asarray(nu_obs_hz, dtype=float) / ins.C_KMS)


@dataclass
class CiiFit:
    """Result of :func:`fit_cii`.

    ``flux`` is the sum of the Gaussian integrals [Jy km/s], ``flux_err`` its
    1-sigma error from the fit covariance (NaN when not available),
    ``components`` one ``(amplitude [Jy km/s], center [km/s], sigma [km/s])``
    per Gaussian, ``params`` the best-fit values (a start for refits).
    """

    flux: float
    flux_err: float
    components: list
    continuum: float
    success: bool
    redchi: float
    params: dict

    @property
    def velocity(self) -> float:
        """Flux-weighted centre [km/s]."""
        a = np.array([c[0] for c in self.components])
        v = np.array([c[1] for c in self.components])
        return float(np.sum(a * v) / np.sum(a)) if np.sum(a) != 0 else float(v[0])

    @property
    def sigma(self) -> float:
        """Dispersion [km/s] of the brightest component."""
        return float(max(self.components, key=lambda c: abs(c[0]))[2])

    def model(self, velocity) -> np.ndarray:
        v = np.asarray(velocity, dtype=float)
        out = np.full(v.shape, self.continuum)
        for a, c, s in self.components:
            out += a / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((v - c) / s) ** 2)
        return out


def _gauss_sum(v, params, n_gauss):
    out = np.full(v.shape, params["c_c"].value)
    for g in range(1, n_gauss + 1):
        a = params[f"g{g}_amplitude"].value
        c = params[f"g{g}_center"].value
        s = params[f"g{g}_sigma"].value
        out = out + a / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((v - c) / s) ** 2)
    return out


def _residual(params, v, y, w, n_gauss):
    r = _gauss_sum(v, params, n_gauss) - y
    return r * w if w is not None else r


def _initial_guess(v, y, n_gauss, v_max_offset, dv):
    near = np.abs(v) <= v_max_offset
    ys = np.convolve(np.nan_to_num(y), np.ones(3) / 3.0, mode="same")
    idx = np.flatnonzero(near)
    v0 = float(v[idx[np.argmax(ys[idx])]]) if idx.size else 0.0
    far = np.abs(v - v0) > 400.0
    c0 = float(np.median(y[far])) if far.sum() >= 3 else 0.0
    win = np.abs(v - v0) <= 300.0
    amp = float(np.sum(y[win] - c0) * dv) if win.any() else 0.0
    guess = {"c_c": c0}
    if n_gauss == 1:
        guess.update({"g1_amplitude": amp, "g1_center": v0, "g1_sigma": 100.0})
    else:
        guess.update({"g1_amplitude": max(0.6 * amp, 0.0), "g1_center": v0, "g1_sigma": 70.0,
                      "g2_amplitude": max(0.4 * amp, 0.0), "g2_center": v0, "g2_sigma": 200.0})
    return guess


def fit_cii(velocity, spectrum, err=None, n_gauss: int = 1, init: dict | None = None,
            v_max_offset: float = 300.0, sigma_max: float = 400.0, fix_kinematics: bool = False,
            continuum: bool = False) -> CiiFit:
    """Fit Gaussian(s) + a constant to a [C II] spectrum with ``lmfit``.

    Parameters
    ----------
    velocity : array (n,)
        Velocity [km/s] (radio convention, 0 = systemic).
    spectrum : array (n,)
        Flux density [Jy]; NaN channels are left out.
    err : array (n,) or float, optional
        1-sigma errors [Jy]; with errors the covariance is not rescaled by the
        reduced chi^2 (``scale_covar=False``); without, it is.
    n_gauss : 1 or 2
        Number of Gaussians; the flux is the sum of their integrals.  With one
        Gaussian the amplitude may be negative (no positive bias on faint
        lines); with two both are >= 0 (no cancelling pairs) and the second is
        the broader one.
    init : dict, optional
        Starting values (e.g. ``CiiFit.params`` of the nominal fit).
    v_max_offset : float
        Gaussian centres are kept within +-``v_max_offset`` km/s of systemic
        (default 300 km/s).
    sigma_max : float
        Upper bound of the dispersions [km/s] (default 400); the lower bound
        is half a channel.
    fix_kinematics : bool
        Keep centres and dispersions at ``init`` (a linear fit of the
        amplitudes and the constant: a matched filter).
    continuum : bool
        Fit the constant.  Default False: the constant is fixed at 0, as
        for ALMA cubes whose continuum was subtracted in the uv plane (the
        usual product, and the mock).  A free constant is degenerate with
        the wings of broad lines when the band covers only a few hundred
        km/s of line-free channels (the mock: +-720 km/s), which makes the
        flux error distribution heavy-tailed; use True for cubes with
        continuum left in.

    Returns
    -------
    CiiFit
    """
    import lmfit

    if n_gauss not in (1, 2):
        raise ValueError(f"n_gauss must be 1 or 2, not {n_gauss!r}")
    v = np.asarray(velocity, dtype=float)
    y = np.asarray(spectrum, dtype=float)
    e = None if err is None else np.broadcast_to(np.asarray(err, dtype=float), y.shape)
    ok = np.isfinite(v) & np.isfinite(y)
    if e is not None:
        ok &= np.isfinite(e) & (e > 0)
    v, y = v[ok], y[ok]
    e = None if e is None else e[ok]
    npar = int(continuum) + (n_gauss if fix_kinematics else 3 * n_gauss)
    if v.size <= npar:
        raise ValueError(f"only {v.size} valid channels for a {n_gauss}-Gaussian fit")
    if fix_kinematics and not init:
        raise ValueError("fix_kinematics needs init (centres and dispersions)")
    dv = float(np.median(np.abs(np.diff(v))))
    vmax = min(v_max_offset, float(np.max(np.abs(v))))
    start = dict(_initial_guess(v, y, n_gauss, vmax, dv))
    if init:
        start.update({k: val for k, val in init.items() if k in start and np.isfinite(val)})
    smin = 0.5 * dv
    params = lmfit.Parameters()
    if continuum:
        params.add("c_c", value=start["c_c"])
    else:
        params.add("c_c", value=0.0, vary=False)
    for g in range(1, n_gauss + 1):
        amp = start[f"g{g}_amplitude"]
        if n_gauss == 2:
            params.add(f"g{g}_amplitude", value=max(amp, 1e-6 * (abs(start["g1_amplitude"]) + 1e-12)), min=0.0)
        else:
            params.add(f"g{g}_amplitude", value=amp)
        if fix_kinematics:
            params.add(f"g{g}_center", value=start[f"g{g}_center"], vary=False)
            params.add(f"g{g}_sigma", value=start[f"g{g}_sigma"], vary=False)
            continue
        params.add(f"g{g}_center", value=float(np.clip(start[f"g{g}_center"], -vmax, vmax)), min=-vmax, max=vmax)
        sig = float(np.clip(start[f"g{g}_sigma"], smin * 1.01, sigma_max * 0.99))
        if g == 1:
            params.add("g1_sigma", value=sig, min=smin, max=sigma_max)
        else:  # second component broader: sigma2 = sigma1 + delta, delta >= 0
            dsig = float(np.clip(sig - params["g1_sigma"].value, 1.0, sigma_max))
            params.add("g2_dsigma", value=dsig, min=0.0, max=sigma_max)
            params.add("g2_sigma", expr="g1_sigma + g2_dsigma")
    w = None if e is None else 1.0 / e
    starts = [params]
    if not init and not fix_kinematics:
        # no starting point given: also start from a few (centre, width)
        # pairs and keep the lowest chi^2 (avoids noise spikes as local minima)
        for vc, sg in ((0.0, 60.0), (0.0, 150.0), (0.0, 250.0), (-0.5 * vmax, 100.0), (0.5 * vmax, 100.0)):
            alt = params.copy()
            alt["g1_center"].set(value=float(np.clip(vc, -vmax, vmax)))
            alt["g1_sigma"].set(value=float(np.clip(sg, smin * 1.01, sigma_max * 0.99)))
            starts.append(alt)
    res = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for par in starts:
            trial = lmfit.minimize(_residual, par, args=(v, y, w, n_gauss), scale_covar=e is None)
            if res is None or (np.isfinite(trial.chisqr) and trial.chisqr < res.chisqr - 1e-9 * abs(res.chisqr)):
                res = trial
    p = res.params
    comps = [(float(p[f"g{g}_amplitude"].value), float(p[f"g{g}_center"].value), float(p[f"g{g}_sigma"].value))
             for g in range(1, n_gauss + 1)]
    flux = float(sum(c[0] for c in comps))
    flux_err = float("nan")
    if res.covar is not None:
        names = list(res.var_names)
        idx = [names.index(f"g{g}_amplitude") for g in range(1, n_gauss + 1) if f"g{g}_amplitude" in names]
        if idx:
            cov = np.asarray(res.covar)[np.ix_(idx, idx)]
            flux_err = float(np.sqrt(max(cov.sum(), 0.0)))
    if not np.isfinite(flux_err) and e is not None:
        # no covariance (a kinematic parameter at a bound): the amplitude
        # error at the best-fit kinematics (linear least squares)
        shapes = [np.exp(-0.5 * ((v - c) / s) ** 2) / (np.sqrt(2 * np.pi) * s) for _, c, s in comps]
        cols = ([np.ones_like(v)] if continuum else []) + shapes
        design = np.stack(cols, axis=1) / e[:, None]
        try:
            cov = np.linalg.inv(design.T @ design)[int(continuum):, int(continuum):]
            flux_err = float(np.sqrt(max(cov.sum(), 0.0)))
        except np.linalg.LinAlgError:
            pass
    best = {k: float(p[k].value) for k in start}
    return CiiFit(flux, flux_err, comps, float(p["c_c"].value), bool(res.success),
                  float(res.redchi) if res.redchi is not None else float("nan"), best)


# ---------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------
def stable_hash(text: str) -> int:
    """64-bit integer from a string, stable across runs (SHA-256; not Python's ``hash``)."""
    return int.from_bytes(hashlib.sha256(str(text).encode("utf-8")).digest()[:8], "little")


def realisation_rng(seed: int, component: str, region: str, realisation: int) -> np.random.Generator:
    """Generator of one MC realisation, keyed by (seed, component, region, 'alma', realisation)."""
    keys = [int(seed)] + [stable_hash(k) for k in (component, region, "alma", str(int(realisation)))]
    return np.random.default_rng(np.random.SeedSequence(keys))


def _disk(radius_pix):
    r = int(np.ceil(radius_pix))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= radius_pix**2


def signal_free_mask(alma: AlmaCube, weights, margin_arcsec: float | None = None) -> np.ndarray:
    """Pixels for the noise estimate: valid and farther than ``margin`` (default BMAJ) from every region."""
    from scipy.ndimage import binary_dilation

    ws = list(weights.values()) if isinstance(weights, dict) else [weights]
    used = np.zeros(alma.shape2d, bool)
    for w in ws:
        used |= np.asarray(w) > 0
    margin = alma.bmaj if margin_arcsec is None else margin_arcsec
    if margin > 0 and used.any():
        used = binary_dilation(used, structure=_disk(margin / alma.pixscale))
    return alma.valid & ~used


def estimate_channel_rms(alma: AlmaCube, signal_free=None, z: float | None = None, mode: str = "channel",
                         line_free_kms: float = 500.0, galaxy=None) -> np.ndarray:
    """Per-channel noise rms [Jy/beam] from signal-free pixels.

    Parameters
    ----------
    alma : AlmaCube
    signal_free : bool array (ny, nx), optional
        Pixels to use (default: all valid pixels).
    z : float, optional
        Redshift; needed for ``mode='global'``.
    mode : 'channel' or 'global'
        ``channel``: sigma-clipped (3.5 sigma) standard deviation of each
        channel; ``global``: the median of that over the line-free channels
        (``|v| > line_free_kms``), used for every channel.
    """
    from astropy.stats import sigma_clip

    sf = alma.valid if signal_free is None else np.asarray(signal_free, bool) & alma.valid
    n_beams = sf.sum() / alma.beam_area_pix
    if n_beams < 10:
        raise InputError(
            galaxy if galaxy is not None else alma.galaxy, alma.path,
            f"only {n_beams:.1f} beams of signal-free pixels to measure the noise",
            "give a cube with a larger field of view around the galaxy",
        )
    vals = alma.data[:, sf]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clipped = sigma_clip(vals, sigma=3.5, maxiters=5, axis=1, masked=True)
        rms = np.asarray(np.ma.std(clipped, axis=1, ddof=1).filled(np.nan), dtype=float)
    if mode == "global":
        if z is None:
            raise ValueError("mode='global' needs z")
        free = np.abs(alma.velocity(z)) > line_free_kms
        ref = float(np.nanmedian(rms[free] if free.sum() >= 3 else rms))
        rms = np.full_like(rms, ref)
    elif mode != "channel":
        raise ValueError(f"unknown rms mode {mode!r}: use 'channel' or 'global'")
    return rms


def _north_east_vectors(wcs: WCS, x0: float, y0: float):
    """Unit pixel-space vectors pointing north and east at pixel (x0, y0)."""
    a = _sky_to_pixel(wcs, x0, y0)
    n, e = a[:, 1], a[:, 0]
    return n / np.hypot(*n), e / np.hypot(*e)


def beam_theta(alma: AlmaCube) -> float:
    """Angle [rad] of the beam major axis from the pixel +x axis (90 deg + BPA for north-up, x west)."""
    ny, nx = alma.shape2d
    n, e = _north_east_vectors(alma.wcs, (nx - 1) / 2.0, (ny - 1) / 2.0)
    b = np.deg2rad(alma.bpa)
    vec = np.cos(b) * n + np.sin(b) * e
    return float(np.arctan2(vec[1], vec[0]))


def beam_kernel(alma: AlmaCube, scale: float = 1.0) -> np.ndarray:
    """Normalised (sum 1) Gaussian beam kernel on the pixel grid (FWHMs times ``scale``)."""
    from astropy.convolution import Gaussian2DKernel

    sx = scale * alma.bmaj / _FWHM / alma.pixscale
    sy = scale * alma.bmin / _FWHM / alma.pixscale
    size = int(np.ceil(4 * sx)) * 2 + 1
    k = Gaussian2DKernel(sx, sy, theta=beam_theta(alma), x_size=size, y_size=size).array
    return k / k.sum()


def noise_autocorrelation(alma: AlmaCube, signal_free, z: float | None = None, line_free_kms: float = 500.0,
                          max_lag_arcsec: float | None = None) -> np.ndarray:
    """Normalised noise autocorrelation rho(dy, dx) (rho(0) = 1) from signal-free pixels.

    Averaged over the line-free channels (all channels when ``z`` is None),
    each channel's masked, median-subtracted map correlated with itself by
    FFT and divided by the mask's own correlation (the number of pixel
    pairs).  Lags up to ``max_lag_arcsec`` (default 2 BMAJ) are kept, the
    rest set to 0.  Returned array is centred: shape (2L+1, 2L+1).
    """
    sf = np.asarray(signal_free, bool) & alma.valid
    chans = np.arange(alma.data.shape[0])
    if z is not None:
        free = np.abs(alma.velocity(z)) > line_free_kms
        if free.sum() >= 3:
            chans = chans[free]
    lag = int(np.ceil((2.0 * alma.bmaj if max_lag_arcsec is None else max_lag_arcsec) / alma.pixscale))
    ny, nx = sf.shape
    shape = (2 * ny, 2 * nx)
    m = sf.astype(float)
    fm = np.fft.rfft2(m, shape)
    npairs = np.fft.irfft2(fm * np.conj(fm), shape)
    good = npairs > 0.5
    acc = np.zeros(shape)
    n_used = 0
    for c in chans:
        plane = alma.data[c]
        ok = sf & np.isfinite(plane)
        if ok.sum() < 10:
            continue
        img = np.where(ok, plane - np.median(plane[ok]), 0.0)
        f = np.fft.rfft2(img, shape)
        acf = np.where(good, np.fft.irfft2(f * np.conj(f), shape) / np.where(good, npairs, 1.0), 0.0)
        if acf[0, 0] > 0:
            acc += acf / acf[0, 0]
            n_used += 1
    if n_used == 0:
        return np.zeros((2 * lag + 1, 2 * lag + 1))
    acc = np.fft.fftshift(acc / n_used)
    cy, cx = ny, nx
    rho = acc[cy - lag : cy + lag + 1, cx - lag : cx + lag + 1].copy()
    yy, xx = np.mgrid[-lag : lag + 1, -lag : lag + 1]
    inside = (xx**2 + yy**2) <= lag**2
    rho[~inside] = 0.0
    # subtracting the sample mean lowers every lag by ~A/N (A: correlation
    # area, N: pixels): rho_hat = (rho - a) / (1 - a); undo it (fixed point)
    n_pix, n_lag, raw = float(sf.sum()), float(inside.sum()), float(rho.sum())
    a = 0.0
    for _ in range(20):
        area = (1.0 - a) * raw + n_lag * a
        a = min(area / n_pix, 0.5)
    rho[inside] = rho[inside] * (1.0 - a) + a
    return rho


def kernel_correlation_area(kernel: np.ndarray) -> float:
    """Correlation area [pixels] of white noise convolved with ``kernel``.

    ``sum_d rho(d)`` with ``rho = (K * K)(d) / sum(K^2)`` (the normalised
    autocorrelation of the kernel), i.e. ``(sum K)^2 / sum K^2``; for a
    Gaussian beam kernel this is twice the beam area in pixels.
    """
    return float(kernel.sum() ** 2 / np.sum(kernel**2))


def _autocorr_weights(w: np.ndarray, lag: int) -> np.ndarray:
    """(w * w)(d) = sum_x w(x) w(x+d) for |d| <= lag, centred, shape (2 lag+1,)*2."""
    ny, nx = w.shape
    shape = (ny + 2 * lag + 1, nx + 2 * lag + 1)
    f = np.fft.rfft2(w, shape)
    ac = np.fft.fftshift(np.fft.irfft2(f * np.conj(f), shape))
    cy, cx = shape[0] // 2, shape[1] // 2
    return ac[cy - lag : cy + lag + 1, cx - lag : cx + lag + 1]


def analytic_errors(alma: AlmaCube, weights, rms, rho: np.ndarray | None = None) -> dict:
    """Analytic per-channel errors [Jy] of an extracted spectrum (see module doc).

    Returns ``{'naive': ..., 'beam': ..., 'acf': ...}`` (``acf`` only when
    the autocorrelation ``rho`` of :func:`noise_autocorrelation` is given).
    """
    w = np.asarray(weights, dtype=float)
    rms = np.asarray(rms, dtype=float)
    omega = alma.beam_area_pix
    naive = rms * np.sqrt(np.sum(w**2)) / omega
    out = {"naive": naive, "beam": naive * np.sqrt(omega)}
    if rho is not None:
        lag = rho.shape[0] // 2
        ys, xs = np.nonzero(w > 0)
        wc = w[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        s = float(np.sum(rho * _autocorr_weights(wc, lag)))
        out["acf"] = rms * np.sqrt(max(s, 0.0)) / omega
    return out


# ---------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------
@dataclass
class MCResult:
    """Monte Carlo [C II] flux of one region (fluxes in Jy km/s).

    ``fluxes``: fitted flux per realisation; ``realisations``: their spectra
    [Jy]; ``window_fluxes``: their integral over the upper-limit window;
    ``channel_err``: the per-channel errors used as fit weights.
    """

    flux: float
    flux_err: float
    fluxes: np.ndarray
    realisations: np.ndarray
    window_fluxes: np.ndarray
    nominal: CiiFit
    spectrum: CiiSpectrum
    channel_err: np.ndarray

    @property
    def fit_err(self) -> np.ndarray:
        """Per-channel errors [Jy] used as fit weights (``beam`` analytic errors)."""
        return self.channel_err

    @property
    def upper_limit_jykms(self) -> float:
        """3 x MC std of the spectrum integrated over the upper-limit window."""
        return float(3.0 * np.std(self.window_fluxes, ddof=1)) if self.window_fluxes.size > 1 else float("nan")


def _cutout(w: np.ndarray, pad: int):
    ys, xs = np.nonzero(w > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    wc = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad))
    wc[pad:-pad or None, pad:-pad or None] = w[y0:y1, x0:x1]
    return wc


def noise_spectra(alma: AlmaCube, weights, rms, seed: int, component: str, region: str, realisations,
                  kernel_scale: float = 1.0, mode: str = "fast") -> np.ndarray:
    """Extracted beam-correlated noise spectra [Jy], one row per realisation index.

    Parameters
    ----------
    alma, weights, rms
        The cube, the region weights and the per-channel rms [Jy/beam].
    seed, component, region
        Keys of the random streams (with ``'alma'`` and the realisation index).
    realisations : int or sequence of int
        Number of realisations (0..n-1) or explicit indices.
    kernel_scale : float
        Kernel FWHMs in units of the beam.
    mode : 'fast' or 'cube'
        Identical results; ``cube`` convolves the white-noise cutout channel
        by channel (the literal draw), ``fast`` uses beam-correlated weights.
    """
    from scipy.signal import fftconvolve

    idx = np.arange(realisations) if np.isscalar(realisations) else np.asarray(list(realisations), dtype=int)
    k = beam_kernel(alma, kernel_scale)
    pad = k.shape[0] // 2
    wc = _cutout(np.asarray(weights, dtype=float), pad)
    n_chan = alma.data.shape[0]
    scale = np.asarray(rms, dtype=float) / np.sqrt(np.sum(k**2)) / alma.beam_area_pix
    scale = np.nan_to_num(scale)
    out = np.empty((idx.size, n_chan))
    if mode == "fast":
        wk = fftconvolve(wc, k[::-1, ::-1], mode="same")
        for j, i in enumerate(idx):
            white = realisation_rng(seed, component, region, i).standard_normal((n_chan,) + wc.shape)
            out[j] = scale * np.tensordot(white, wk, axes=([1, 2], [0, 1]))
    elif mode == "cube":
        for j, i in enumerate(idx):
            white = realisation_rng(seed, component, region, i).standard_normal((n_chan,) + wc.shape)
            conv = fftconvolve(white, k[None], mode="same", axes=(1, 2))
            out[j] = scale * np.tensordot(conv, wc, axes=([1, 2], [0, 1]))
    else:
        raise ValueError(f"unknown MC mode {mode!r}: use 'fast' or 'cube'")
    return out


def window_flux(spec: CiiSpectrum, flux_jy, center_kms: float = 0.0, width_kms: float = 300.0) -> np.ndarray:
    """Flux [Jy km/s] integrated over channels within ``width/2`` of ``center`` (rows of ``flux_jy``)."""
    sel = np.abs(spec.velocity - center_kms) <= 0.5 * width_kms
    if not sel.any():
        sel = np.argmin(np.abs(spec.velocity - center_kms)) == np.arange(spec.velocity.size)
    return np.nansum(np.atleast_2d(flux_jy)[:, sel], axis=1) * spec.dv_kms


def fit_realisations(spec: CiiSpectrum, realisations, n_gauss: int, init: dict | None, err=None,
                     **fit_kw) -> np.ndarray:
    """Fitted fluxes [Jy km/s] of each row of ``realisations`` (NaN where a fit fails).

    ``fit_kw`` go to :func:`fit_cii` (e.g. ``fix_kinematics=True``).
    """
    out = np.empty(len(realisations))
    for j, y in enumerate(realisations):
        try:
            out[j] = fit_cii(spec.velocity, y, err=err, n_gauss=n_gauss, init=init, **fit_kw).flux
        except (ValueError, RuntimeError):
            out[j] = np.nan
    return out


def mc_cii(alma: AlmaCube, weights, z: float, component: str, region: str, seed: int, n_mc: int = 100,
           rms=None, n_gauss: int = 1, mode: str = "fast", kernel_scale: float = 1.0,
           signal_free=None, ul_window_kms: float = 300.0, galaxy=None, kinematics: str = "free",
           **fit_kw) -> MCResult:
    """Monte Carlo [C II] flux and error of one region (see module doc).

    Parameters
    ----------
    alma, weights, z
        Cube, region weights, redshift.
    component, region, seed
        Keys of the random streams.
    n_mc : int or sequence of int
        Number of realisations, or the realisation indices to run (a batch).
    rms : array (n_chan,), optional
        Per-channel rms [Jy/beam]; default from :func:`estimate_channel_rms`
        on ``signal_free`` (default: pixels more than BMAJ from this region).
    n_gauss, mode, kernel_scale, ul_window_kms
        See :func:`fit_cii`, :func:`noise_spectra`, module doc.
    kinematics : 'free' or 'fixed'
        ``free``: every realisation is refitted with all parameters free
        (starting from the nominal fit); ``fixed``: centres and dispersions
        stay at the nominal fit (a matched filter: only amplitudes and the
        constant are refitted).
    fit_kw
        Extra :func:`fit_cii` arguments (``v_max_offset``, ``sigma_max``).
    """
    if kinematics not in ("free", "fixed"):
        raise ValueError(f"unknown kinematics {kinematics!r}: use 'free' or 'fixed'")
    spec = extract_cii(alma, weights, z, galaxy)
    if rms is None:
        sf = signal_free if signal_free is not None else signal_free_mask(alma, weights)
        rms = estimate_channel_rms(alma, sf, z, galaxy=galaxy)
    err_nom = analytic_errors(alma, weights, rms)["beam"]
    nominal = fit_cii(spec.velocity, spec.flux_jy, err=err_nom, n_gauss=n_gauss, **fit_kw)
    noise = noise_spectra(alma, weights, rms, seed, component, region, n_mc, kernel_scale, mode)
    reals = spec.flux_jy[None, :] + noise
    fluxes = fit_realisations(spec, reals, n_gauss, nominal.params, err=err_nom,
                              fix_kinematics=kinematics == "fixed", **fit_kw)
    good = np.isfinite(fluxes)
    flux = float(np.median(fluxes[good])) if good.any() else float("nan")
    err = float(np.std(fluxes[good], ddof=1)) if good.sum() > 1 else float("nan")
    wf = window_flux(spec, reals, 0.0, ul_window_kms)
    return MCResult(flux, err, fluxes, reals, wf, nominal, spec, err_nom)


# ---------------------------------------------------------------------------
# one galaxy
# ---------------------------------------------------------------------------
def measure_galaxy(alma, masks, mask_wcs: WCS | None, galaxy: str, z: float, seed: int, n_mc: int = 100,
                   n_gauss: int = 1, detect_snr: float = 3.0, mode: str = "fast", kernel_scale=1.0,
                   rms_mode: str = "channel", min_coverage: float = 0.9, ul_window_kms: float = 300.0,
                   continuum: bool = False, v_max_offset: float = 300.0, sigma_max: float = 400.0):
    """[C II] of every mask region of one galaxy.

    Parameters
    ----------
    alma : AlmaCube or path
    masks : dict or path
        ``{name: bool array}`` (extension names ``ISM``, ``CGM``, ``ISM_A`` ...),
        or a mask file ``results/masks/<variant>/<id>.fits`` (then
        ``mask_wcs=None``: read with :func:`ismcgm.masks.read_masks`).
    mask_wcs : WCS or None
        Aligned celestial WCS of the masks.
    galaxy, z, seed
        Galaxy id, redshift, workflow seed.
    kernel_scale : float or 'auto'
        MC kernel size in beams; ``'auto'`` matches the measured noise
        correlation area.
    continuum, v_max_offset, sigma_max
        Fit options (:func:`fit_cii`).

    Returns
    -------
    table : pandas.DataFrame
        One row per region, columns :data:`CII_COLUMNS`.
    spectra : dict
        ``{(component, region): (CiiSpectrum, CiiFit, MCResult)}``.
    """
    import pandas as pd

    fit_kw = {"continuum": continuum, "v_max_offset": v_max_offset, "sigma_max": sigma_max}
    if not isinstance(alma, AlmaCube):
        alma = read_alma_cube(alma, galaxy)
    if mask_wcs is None:
        from .masks import read_masks

        masks, mask_wcs, _ = read_masks(masks)
    weights = reproject_masks(masks, mask_wcs, alma, galaxy, min_coverage)
    check_line_coverage(alma, z, galaxy)
    sf = signal_free_mask(alma, weights)
    rms = estimate_channel_rms(alma, sf, z, mode=rms_mode, galaxy=galaxy)
    rho = noise_autocorrelation(alma, sf, z)
    corr_area = float(rho.sum())
    if kernel_scale == "auto":
        model_area = kernel_correlation_area(beam_kernel(alma, 1.0))
        kscale = float(np.sqrt(corr_area / model_area)) if corr_area > 0 else 1.0
    else:
        kscale = float(kernel_scale)
    rows, spectra = [], {}
    for name, w in weights.items():
        component, region = region_names(galaxy, name)
        res = mc_cii(alma, w, z, component, region, seed, n_mc, rms=rms, n_gauss=n_gauss, mode=mode,
                     kernel_scale=kscale, ul_window_kms=ul_window_kms, galaxy=galaxy, **fit_kw)
        spec = res.spectrum
        errs = analytic_errors(alma, w, rms, rho)
        an = {}
        for key in ("naive", "beam", "acf"):
            try:
                an[key] = fit_cii(spec.velocity, spec.flux_jy, err=errs[key], n_gauss=n_gauss, init=res.nominal.params,
                                  **fit_kw).flux_err
            except ValueError:
                an[key] = float("nan")
        nu = spec.nu_line_hz
        snr = res.flux / res.flux_err if res.flux_err > 0 else float("nan")
        detected = bool(np.isfinite(snr) and snr >= detect_snr)
        rows.append({
            "id": galaxy,
            "component": component,
            "region": region,
            "line": "CII",
            "flux": float(jykms_to_cgs(res.flux, nu)),
            "flux_err": float(jykms_to_cgs(res.flux_err, nu)),
            "snr": snr,
            "detected": detected,
            "upper_limit": float("nan") if detected else float(jykms_to_cgs(res.upper_limit_jykms, nu)),
            "flux_jykms": res.flux,
            "flux_jykms_err": res.flux_err,
            "flux_nominal_jykms": res.nominal.flux,
            "err_naive_jykms": an["naive"],
            "err_beam_jykms": an["beam"],
            "err_acf_jykms": an["acf"],
            "velocity_kms": res.nominal.velocity,
            "sigma_kms": res.nominal.sigma,
            "n_gauss": int(n_gauss),
            "nu_obs_hz": nu,
            "beam_area_pix": alma.beam_area_pix,
            "coverage": weights.coverage[name],
            "rms_jybeam": float(np.nanmedian(rms)),
            "corr_area_pix": corr_area,
            "kernel_scale": kscale,
            "n_mc": int(res.fluxes.size),
        })
        spectra[(component, region)] = (spec, res.nominal, res)
    return pd.DataFrame(rows, columns=list(CII_COLUMNS)), spectra


def cii_line_flux_rows(cii_table):
    """The [C II] rows in the ``line_fluxes`` format of :mod:`ismcgm.ratios`.

    [C II] is not extincted: ``flux_dustcorr = flux``; ``grating = 'alma'``.
    The spill-corrected columns (``flux_native``, ``flux_native_err``,
    ``upper_limit_native``; :func:`spill_corrected`) are kept when present.
    """
    import pandas as pd

    df = cii_table
    extra = {c: df[c] for c in ("flux_native", "flux_native_err", "upper_limit_native") if c in df.columns}
    return pd.DataFrame({
        "id": df["id"],
        "component": df["component"],
        "region": df["region"],
        "grating": "alma",
        "line": "CII",
        "flux": df["flux"],
        "flux_err": df["flux_err"],
        "snr": df["snr"],
        "detected": df["detected"].astype(bool),
        "upper_limit": df["upper_limit"],
        "flux_dustcorr": df["flux"],
        "flux_dustcorr_err": df["flux_err"],
        "ebv_gas": np.nan,
        "ebv_gas_err": np.nan,
        "velocity_kms": df["velocity_kms"],
        "sigma_kms": df["sigma_kms"],
        **extra,
    })


def spectra_table(spectra: dict, galaxy: str):
    """Long table of extracted spectra and nominal models (for plots): one row per channel."""
    import pandas as pd

    parts = []
    for (component, region), (spec, fit, _) in spectra.items():
        parts.append(pd.DataFrame({
            "id": galaxy, "component": component, "region": region,
            "velocity_kms": spec.velocity, "flux_jy": spec.flux_jy, "model_jy": fit.model(spec.velocity),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["id", "component", "region", "velocity_kms", "flux_jy", "model_jy"])


# ---------------------------------------------------------------------------
# [C II] / Ha table
# ---------------------------------------------------------------------------
def _as_lookup(obj, value_cols, what):
    """``{(id, component, region): tuple(values)}`` from a dict or DataFrame."""
    if isinstance(obj, dict):
        return {tuple(k): (v if isinstance(v, tuple) else (v,)) for k, v in obj.items()}
    df = obj
    for cols in value_cols:
        if all(c in df.columns for c in cols):
            return {(str(r["id"]), str(r["component"]), str(r["region"])): tuple(r[c] for c in cols)
                    for _, r in df.iterrows()}
    raise ValueError(f"{what}: need columns id, component, region and one of {value_cols}")


def cii_ratio_table(cii, ha, balmer, snr_detect: float = 3.0):
    """F[C II] / F(Ha, dust-corrected) per region and Delta log(Ha/Hb)_CGM-ISM per component.

    Parameters
    ----------
    cii : DataFrame or dict
        Per region ``id, component, region, flux, flux_err`` [erg/s/cm2]
        (+ ``detected``, ``upper_limit``: the :func:`measure_galaxy` table),
        or ``{(id, component, region): (flux, flux_err)}`` (then detected =
        ``flux / flux_err >= snr_detect``, limit 3 ``flux_err``).
    ha : DataFrame or dict
        Dust-corrected Ha: a ``line_fluxes`` table (rows ``line == 'HA'``,
        ``flux_dustcorr``, ``flux_dustcorr_err``) or columns ``flux, flux_err``,
        or ``{key: (flux, err)}``.
    balmer : DataFrame or dict
        Observed Balmer decrement: the ratio table (rows ``ratio ==
        'BALMER'``, ``log_value`` and ``limit``), or columns ``ha_hb``
        (linear), or ``{key: ha_hb}``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RATIO_TABLE_COLUMNS`.  ``cii_ha`` is linear; for a
        non-detected [C II] it is the 3-sigma upper limit over Ha with
        ``cii_ha_err`` NaN and ``detected`` False.  Errors are first-order:
        ``cii_ha sqrt((s_C/C)^2 + (s_Ha/Ha)^2)``.  ``delta_balmer =
        log10(Ha/Hb)_CGM - log10(Ha/Hb)_ISM`` of the component (same value on
        both rows; NaN when a region is missing); ``delta_balmer_limit`` is
        True when either region's Balmer decrement is a limit or undefined.
        When ``cii`` has the spill-corrected columns (:func:`spill_corrected`)
        ``cii_ha`` uses ``flux_native`` (and its error and limit): both lines
        at the IFU resolution.
    """
    import pandas as pd

    if isinstance(ha, pd.DataFrame) and "line" in ha.columns:
        ha = ha[ha["line"] == "HA"]
    ha_map = _as_lookup(ha, [("flux_dustcorr", "flux_dustcorr_err"), ("flux", "flux_err")], "ha")
    if isinstance(balmer, pd.DataFrame) and "ratio" in balmer.columns:
        balmer = balmer[balmer["ratio"] == "BALMER"]
    if isinstance(balmer, pd.DataFrame) and "log_value" in balmer.columns:
        if "limit" not in balmer.columns:
            balmer = balmer.assign(limit="none")
        bal_map = {k: (v[0], v[1]) for k, v in _as_lookup(balmer, [("log_value", "limit")], "balmer").items()}
    elif isinstance(balmer, pd.DataFrame):
        bal_map = {k: (np.log10(v[0]) if v[0] > 0 else np.nan, "none")
                   for k, v in _as_lookup(balmer, [("ha_hb",)], "balmer").items()}
    else:
        bal_map = {tuple(k): (np.log10(v) if v > 0 else np.nan, "none") for k, v in balmer.items()}

    if isinstance(cii, dict):
        rows = [{"id": k[0], "component": k[1], "region": k[2], "flux": v[0], "flux_err": v[1]} for k, v in cii.items()]
        cii = pd.DataFrame(rows)
    cii = cii.copy()
    if "detected" not in cii.columns:
        cii["detected"] = (cii["flux"] / cii["flux_err"]) >= snr_detect
    if "upper_limit" not in cii.columns:
        cii["upper_limit"] = 3.0 * cii["flux_err"]
    native = native_resolution(cii)

    out = []
    for (_, r), (_, nat) in zip(cii.iterrows(), native.iterrows()):
        key = (str(r["id"]), str(r["component"]), str(r["region"]))
        hf, he = (float(x) for x in ha_map.get(key, (np.nan, np.nan)))
        c, ce = float(nat["flux"]), float(nat["flux_err"])
        det = bool(r["detected"])
        ul = float(nat["upper_limit"]) if np.isfinite(nat["upper_limit"]) else 3.0 * ce
        with np.errstate(invalid="ignore", divide="ignore"):
            if not (np.isfinite(hf) and hf > 0):
                ratio, rerr = np.nan, np.nan
            elif det:
                ratio = c / hf
                rerr = abs(ratio) * np.sqrt((ce / c) ** 2 + (he / hf) ** 2)
            else:
                ratio, rerr = ul / hf, np.nan
        comp = key[1]
        ism = bal_map.get((key[0], comp, "ISM"), (np.nan, "undefined"))
        cgm = bal_map.get((key[0], comp, "CGM"), (np.nan, "undefined"))
        delta = float(cgm[0]) - float(ism[0])
        lim = not (str(ism[1]) == "none" and str(cgm[1]) == "none") or not np.isfinite(delta)
        out.append({
            "id": key[0], "component": comp, "region": key[2],
            "cii_flux": float(r["flux"]), "cii_flux_err": float(r["flux_err"]), "detected": det,
            "cii_ha": ratio, "cii_ha_err": rerr,
            "delta_balmer": delta, "delta_balmer_limit": bool(lim),
            "cii_upper_limit": np.nan if det else ul,
            "ha_flux": hf, "ha_flux_err": he, "cii_flux_native": c, "cii_flux_native_err": ce,
            "cii_ha_p16": ratio - rerr, "cii_ha_p84": ratio + rerr,
        })
    return pd.DataFrame(out, columns=list(RATIO_TABLE_COLUMNS))


def with_ratio_percentiles(table, ratios_df):
    """``cii_ha`` of :func:`cii_ratio_table` replaced by the Monte Carlo ``CII_HA`` of the ratio table.

    Where ``ratios.csv`` has ``CII_HA`` without a limit, ``cii_ha`` =
    ``10**log_value`` (the median over the realisations of [C II] / dust-corrected
    Ha), ``cii_ha_p16`` / ``cii_ha_p84`` = ``10**log_p16`` / ``10**log_p84``
    and ``cii_ha_err`` half their difference, so that Fig. 6 and the
    statistics use the same numbers.  Limits keep the values of
    :func:`cii_ratio_table`.
    """
    keys = ["id", "component", "region"]
    mc = ratios_df[(ratios_df["ratio"] == "CII_HA") & (ratios_df["limit"] == "none")]
    mc = mc[keys + ["log_value", "log_p16", "log_p84"]].astype({k: str for k in keys})
    out = table.astype({k: str for k in keys}).merge(mc, on=keys, how="left")
    use = np.isfinite(out["log_value"].to_numpy(float))
    p16, p84 = 10.0 ** out["log_p16"].to_numpy(float), 10.0 ** out["log_p84"].to_numpy(float)
    out["cii_ha"] = np.where(use, 10.0 ** out["log_value"].to_numpy(float), out["cii_ha"])
    out["cii_ha_p16"] = np.where(use, p16, out["cii_ha_p16"])
    out["cii_ha_p84"] = np.where(use, p84, out["cii_ha_p84"])
    out["cii_ha_err"] = np.where(use, 0.5 * (p84 - p16), out["cii_ha_err"])
    return out.loc[:, list(table.columns)]


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

    from .masks import COSMO

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
        offsets.append((x0, y0, np.linalg.inv(_sky_to_pixel(alma.wcs.celestial, x0, y0))))
    sel &= near
    en = [ainv @ np.stack([xx[sel] - x0, yy[sel] - y0]) for x0, y0, ainv in offsets]  # (east, north) ["]
    pa = np.deg2rad(alma.bpa)
    maj, mnr = np.array([np.sin(pa), np.cos(pa)]), np.array([np.cos(pa), -np.sin(pa)])
    c_beam = (alma.bmaj / _FWHM) ** 2 * np.outer(maj, maj) + (alma.bmin / _FWHM) ** 2 * np.outer(mnr, mnr)
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

    p0 = [0.5 * alma.bmaj / _FWHM] + [max(float(np.nanmax(data)), rms), 0.0, 0.0] * nc
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
    kpc_per_arcsec = COSMO.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60.0
    return {"r_arcsec": s * k, "r_kpc": s * k * kpc_per_arcsec, "r_err_arcsec": float(perr[0] * k), "snr": snr}


# ---------------------------------------------------------------------------
# beam spill between regions: [C II] at the IFU resolution
# ---------------------------------------------------------------------------
def _sky_to_pixel(wcs: WCS, x0: float, y0: float) -> np.ndarray:
    """2x2 matrix taking a sky offset (east, north) [arcsec] at pixel (x0, y0) to a pixel offset."""
    ra, dec = wcs.pixel_to_world_values(x0, y0)
    d = 1.0 / 3600.0
    xn, yn = wcs.world_to_pixel_values(ra, dec + d)
    xe, ye = wcs.world_to_pixel_values(ra + d / np.cos(np.deg2rad(dec)), dec)
    return np.array([[xe - x0, xn - x0], [ye - y0, yn - y0]], dtype=float)


def matching_kernel(beam, psf_fwhm: float, wcs: WCS, galaxy=None) -> np.ndarray:
    """Kernel taking a circular Gaussian PSF to an elliptical Gaussian beam, on a pixel grid.

    Parameters
    ----------
    beam : (float, float, float)
        Target beam: BMAJ, BMIN [arcsec] and BPA [deg east of north].
    psf_fwhm : float
        FWHM [arcsec] of the (circular Gaussian) PSF of the map to smooth.
    wcs : astropy.wcs.WCS
        Celestial WCS of the map (any pixel scale and rotation).

    Returns
    -------
    ndarray
        Normalised (sum 1) kernel, odd size, covering +-4 sigma of its major axis.

    Notes
    -----
    The kernel covariance is ``C_beam - (psf_fwhm / 2.355)^2 I`` in sky
    coordinates, turned into pixels through the local WCS Jacobian.  Where
    the beam is *narrower* than the PSF along an axis the difference is
    negative; it is set to zero there (no smoothing along that axis; the
    beam cannot be matched exactly) with a warning.
    """
    from astropy.convolution import Model2DKernel
    from astropy.modeling.models import Gaussian2D

    bmaj, bmin, bpa = (float(b) for b in beam)
    pa = np.deg2rad(bpa)
    major = np.array([np.sin(pa), np.cos(pa)])  # (east, north)
    minor = np.array([np.cos(pa), -np.sin(pa)])
    cov_sky = ((bmaj / _FWHM) ** 2 * np.outer(major, major) + (bmin / _FWHM) ** 2 * np.outer(minor, minor)
               - (psf_fwhm / _FWHM) ** 2 * np.eye(2))
    ny, nx = wcs.array_shape if wcs.array_shape else (1, 1)
    a = _sky_to_pixel(wcs.celestial, (nx - 1) / 2.0, (ny - 1) / 2.0)
    vals, vecs = np.linalg.eigh(a @ cov_sky @ a.T)
    if vals.min() < 0:
        warnings.warn(f"{galaxy or ''}: the ALMA beam {bmaj:.3g}x{bmin:.3g}\" is narrower than the IFU PSF "
                      f"({psf_fwhm:.3g}\") along one axis; Ha is not smoothed along it", RuntimeWarning)
    vals = np.maximum(vals, 1e-4)  # (0.01 pix)^2: a delta function along that axis
    cov_pix = vecs @ np.diag(vals) @ vecs.T
    half = int(np.ceil(4.0 * np.sqrt(vals.max())))
    model = Gaussian2D(1.0, 0.0, 0.0, cov_matrix=cov_pix)
    k = Model2DKernel(model, x_size=2 * half + 1, y_size=2 * half + 1, mode="center").array
    return k / k.sum()


def transfer_matrix(ha_map, masks: dict, wcs: WCS, beam, psf_fwhm: float, galaxy=None):
    """Beam spill between regions: ``T[m, r]`` = fraction of region ``r``'s flux seen in mask ``m`` by ALMA.

    Region ``r``'s emission is modelled with the morphology of Ha inside it
    (``ha_map`` restricted to mask ``r``); convolved with the kernel from the
    IFU PSF to the ALMA beam (:func:`matching_kernel`) and summed over mask
    ``m``, divided by its own total.  The columns need not sum to 1 (light
    spills outside every mask).

    Parameters
    ----------
    ha_map : ndarray (ny, nx)
        Ha line flux per spaxel (noisy or noiseless; NaN taken as 0).
    masks : dict
        ``{name: bool array}`` on the grid of ``ha_map``.
    wcs : astropy.wcs.WCS
        Celestial WCS of that grid.
    beam, psf_fwhm
        See :func:`matching_kernel`.

    Returns
    -------
    names : list of str
    T : ndarray (n, n)
        NaN columns for regions whose Ha sum is not positive.
    """
    from astropy.convolution import convolve_fft

    ha = np.nan_to_num(np.asarray(ha_map, float), nan=0.0)
    w = wcs.celestial.deepcopy()
    w.array_shape = ha.shape
    kern = matching_kernel(beam, psf_fwhm, w, galaxy)
    names = list(masks)
    t = np.full((len(names), len(names)), np.nan)
    for j, r in enumerate(names):
        total = float(ha[masks[r]].sum())
        if not total > 0:
            continue
        smooth = convolve_fft(np.where(masks[r], ha, 0.0), kern, boundary="fill", fill_value=0.0,
                              normalize_kernel=True)
        t[:, j] = [smooth[masks[m]].sum() / total for m in names]
    return names, t


def transfer_matrix_from_cube(cube, masks_path, z: float, psf_fwhm: float, beam, galaxy=None):
    """:func:`transfer_matrix` with the Ha map of an IFU cube (:func:`ismcgm.masks.line_map`).

    The masks (file of :func:`ismcgm.masks.write_masks`) are carried onto the
    cube's grid shifted by the alignment recorded in the mask file
    (``SHIFTRA``, ``SHIFTDEC``), as the extraction does.
    """
    from .extract import carry_mask
    from .masks import line_map, read_masks, shifted_wcs

    mask_dict, mask_wcs, headers = read_masks(masks_path)
    prim = headers["PRIMARY"]
    wcs = shifted_wcs(cube.wcs, float(prim.get("SHIFTRA", 0.0)), float(prim.get("SHIFTDEC", 0.0))).celestial
    shape = cube.sci.shape[1:]
    carried = {k: carry_mask(m, mask_wcs, wcs, shape) for k, m in mask_dict.items()}
    try:
        ha = line_map(cube, z, "HA")
    except ValueError as exc:
        raise InputError(galaxy, cube.path, f"cannot make the Ha map for [C II]/Ha: {exc}",
                         "give a cube covering Ha at the galaxy redshift") from None
    return transfer_matrix(ha, carried, wcs, beam, psf_fwhm, galaxy)


def _spill_inverse(table, names, t, galaxy: str):
    """``T^-1`` in the row order of ``table`` and the diagonal of ``T``; None where not invertible."""
    index = {region_names(galaxy, n): k for k, n in enumerate(names)}
    order = [index[(c, r)] for c, r in zip(table["component"], table["region"])]
    tt = t[np.ix_(order, order)]
    if np.all(np.isfinite(tt)) and np.linalg.cond(tt) < 1e6:
        return np.linalg.inv(tt), np.diag(tt)
    warnings.warn(f"{galaxy}: beam-spill matrix not invertible (a region without Ha); [C II] left as measured",
                  RuntimeWarning)
    return None, np.ones(len(table))


def spill_corrected(table, names, t, galaxy: str):
    """[C II] of every region at the IFU resolution: ``C_native = T^-1 C_measured``.

    Parameters
    ----------
    table : DataFrame
        :func:`measure_galaxy` rows (``component, region, flux, flux_err,
        upper_limit`` [erg/s/cm2]).
    names, t
        :func:`transfer_matrix` of the same masks.
    galaxy : str

    Returns
    -------
    DataFrame
        ``table`` with ``flux_native``, ``flux_native_err`` (first-order,
        the regions' errors taken as independent) and ``upper_limit_native``
        (``upper_limit / T[r, r]``, conservative: the spill from other regions
        is not subtracted).  Where ``T`` cannot be inverted (a region without
        positive Ha) the native columns equal the measured ones, with a
        warning.
    """
    df = table.copy()
    inv, diag = _spill_inverse(df, names, t, galaxy)
    flux, err = df["flux"].to_numpy(float), df["flux_err"].to_numpy(float)
    if inv is not None:
        native, native_err = inv @ flux, np.sqrt((inv**2) @ err**2)
    else:
        native, native_err = flux, err
    df["flux_native"], df["flux_native_err"] = native, native_err
    df["upper_limit_native"] = df["upper_limit"].to_numpy(float) / diag
    return df


#: Columns of :func:`realisation_table` (``results/cii/<variant>/<id>_realisations.parquet``).
REALISATION_COLUMNS = ("id", "component", "region", "realisation", "flux", "flux_native")


def realisation_table(table, spectra: dict, names, t, galaxy: str):
    """[C II] flux of every Monte Carlo realisation, measured and at the IFU resolution.

    The spill correction is linear, so it is applied realisation by
    realisation: ``C_native[:, i] = T^-1 C_measured[:, i]`` over the regions
    of realisation ``i`` (the measured fluxes where ``T`` is not invertible,
    as :func:`spill_corrected`).  A failed fit (NaN) in one region makes that
    realisation's native fluxes NaN in every region it spills into.

    Parameters
    ----------
    table, spectra
        The two outputs of :func:`measure_galaxy`.
    names, t
        :func:`transfer_matrix` of the same masks.
    galaxy : str

    Returns
    -------
    pandas.DataFrame
        :data:`REALISATION_COLUMNS`, fluxes in erg/s/cm2.
    """
    import pandas as pd

    keys = list(zip(table["component"], table["region"]))
    fluxes = np.array([jykms_to_cgs(spectra[k][2].fluxes, spectra[k][0].nu_line_hz) for k in keys], dtype=float)
    fluxes = fluxes.reshape(len(keys), -1)
    inv, _ = _spill_inverse(table, names, t, galaxy)
    native = inv @ fluxes if inv is not None else fluxes
    n = fluxes.shape[1]
    return pd.DataFrame({
        "id": galaxy,
        "component": np.repeat([k[0] for k in keys], n),
        "region": np.repeat([k[1] for k in keys], n),
        "realisation": np.tile(np.arange(n), len(keys)),
        "flux": fluxes.ravel(),
        "flux_native": native.ravel(),
    }, columns=list(REALISATION_COLUMNS))


def native_resolution(rows):
    """[C II] rows (``line_fluxes`` format) with the spill-corrected fluxes in place of the measured ones.

    What the ratio stage uses for ``CII_HA`` (:func:`spill_corrected`); rows
    without the native columns are returned unchanged.  The measured [C II]
    fluxes (``results/cii/``, ``cii_flux`` of ``cii.csv``) are never changed.
    """
    df = rows.copy()
    if "flux_native" not in df.columns:
        return df
    native = df["flux_native"].to_numpy(float)
    ok = np.isfinite(native)
    for col, src in (("flux", "flux_native"), ("flux_dustcorr", "flux_native"), ("flux_err", "flux_native_err"),
                     ("flux_dustcorr_err", "flux_native_err"), ("upper_limit", "upper_limit_native")):
        if col in df.columns and src in df.columns:
            df[col] = np.where(ok, df[src].to_numpy(float), df[col].to_numpy(float))
    return df


# ---------------------------------------------------------------------------
# simulation maps
# ---------------------------------------------------------------------------
def sim_profiles(cii_map, ha_map, pixscale_kpc: float, center=None, r_inner: float = 3.0, r_outer: float = 15.0,
                 r_norm: float = 1.5, dr: float = 0.5, drop_fraction: float = 1e-2, r_drop_default: float = 10.0):
    """Aperture ratios and normalised radial ratio profile of simulated maps.

    Parameters
    ----------
    cii_map, ha_map : 2-D arrays
        [C II] and Ha per pixel, in the same units (so their ratio is
        F[C II]/F(Ha), intrinsic Ha).
    pixscale_kpc : float
        Pixel size [kpc].
    center : (x, y), optional
        Galaxy centre in pixels (default: the map centre).
    r_inner, r_outer : float
        ``ratio_inner`` sums r < r_inner, ``ratio_outer`` r_inner <= r < r_outer [kpc].
    r_norm : float
        Normalisation radius of the profile [kpc] (a bin centre).
    dr : float
        Annulus width [kpc]; annuli are centred at dr, 2 dr, ... r_outer.
    drop_fraction, r_drop_default : float
        ``r_drop_kpc`` is the first annulus where the [C II] surface
        brightness drops below ``drop_fraction`` of its value at ``r_norm``
        (``r_drop_default`` if never), the x position of the simulation
        stars in the paper's Fig. 6 lower panel.

    Returns
    -------
    profile : pandas.DataFrame
        ``r_kpc, ratio, ratio_norm, cii_sb_norm``.
    summary : dict
        ``ratio_inner, ratio_outer, delta_log (log10 outer/inner), r_drop_kpc``.
    """
    import pandas as pd

    cii_map = np.nan_to_num(np.asarray(cii_map, dtype=float))
    ha_map = np.nan_to_num(np.asarray(ha_map, dtype=float))
    if cii_map.shape != ha_map.shape:
        raise ValueError(f"[C II] map {cii_map.shape} and Ha map {ha_map.shape} differ in shape")
    ny, nx = cii_map.shape
    cx, cy = ((nx - 1) / 2.0, (ny - 1) / 2.0) if center is None else center
    yy, xx = np.mgrid[0:ny, 0:nx]
    r = np.hypot(xx - cx, yy - cy) * pixscale_kpc
    inner = r < r_inner
    outer = (r >= r_inner) & (r < r_outer)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_inner = cii_map[inner].sum() / ha_map[inner].sum()
        ratio_outer = cii_map[outer].sum() / ha_map[outer].sum()
    centres = dr * np.arange(1, int(round(r_outer / dr)) + 1)
    ratio = np.full(centres.size, np.nan)
    sb = np.full(centres.size, np.nan)
    for i, rc in enumerate(centres):
        sel = (r >= rc - 0.5 * dr) & (r < rc + 0.5 * dr)
        if sel.any():
            sb[i] = cii_map[sel].mean()
            h = ha_map[sel].sum()
            if h > 0:
                ratio[i] = cii_map[sel].sum() / h
    k = int(np.argmin(np.abs(centres - r_norm)))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_norm = ratio / ratio[k]
        sb_norm = sb / sb[k]
    beyond = np.flatnonzero((centres > centres[k]) & (sb_norm < drop_fraction))
    r_drop = float(centres[beyond[0]]) if beyond.size else float(r_drop_default)
    profile = pd.DataFrame({"r_kpc": centres, "ratio": ratio, "ratio_norm": ratio_norm, "cii_sb_norm": sb_norm})
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = float(np.log10(ratio_outer / ratio_inner))
    summary = {"ratio_inner": float(ratio_inner), "ratio_outer": float(ratio_outer), "delta_log": delta,
               "r_drop_kpc": r_drop}
    return profile, summary


def mock_sim_maps(seed: int = 1, n: int = 6, npix: int = 121, pixscale_kpc: float = 0.25, outdir=None) -> list[dict]:
    """SYNTHETIC simulation-like [C II] and Ha maps (stand-ins for SERRA; not real).

    Each map is centred; Ha is an exponential disk (scale length 0.6-1.2
    kpc) with two off-centre clumps and a faint diffuse halo (0.2-1 % of the
    central surface brightness, scale length 2-3 kpc); [C II] is a disk of
    scale length 0.6-1.1 times that of Ha (ratio 0.2-0.6 at the centre) plus
    a faint extended halo (0-1 % of its central surface brightness, scale
    length 2-4 kpc), so some maps have a falling and some a rising
    [C II]/Ha.
    Units: erg/s/cm2 per pixel (Ha total ~1e-16).

    Parameters
    ----------
    seed, n : int
        Random seed and number of maps (names ``synthsim01`` ...).
    npix, pixscale_kpc
        Map size and pixel scale [kpc].
    outdir : path-like, optional
        Write ``<outdir>/<sim>.fits`` (extensions ``CII``, ``HA``, header
        ``PIXKPC``, ``MOCK = T`` and the :data:`SIM_LABEL` comment).

    Returns
    -------
    list of dict
        ``{'sim', 'cii', 'ha', 'pixscale_kpc', 'label'}``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), stable_hash("mock_sim_maps")]))
    c = (npix - 1) / 2.0
    yy, xx = np.mgrid[0:npix, 0:npix]
    r = np.hypot(xx - c, yy - c) * pixscale_kpc
    out = []
    for i in range(n):
        rd = rng.uniform(0.6, 1.2)
        ha = np.exp(-r / rd)
        for _ in range(2):
            ang, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
            x0, y0 = c + rr * np.cos(ang) / pixscale_kpc, c + rr * np.sin(ang) / pixscale_kpc
            ha += rng.uniform(0.1, 0.4) * np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / (0.3 / pixscale_kpc) ** 2)
        ha += rng.uniform(0.002, 0.01) * np.exp(-r / rng.uniform(2.0, 3.0))  # diffuse ionised halo
        cii = rng.uniform(0.2, 0.6) * np.exp(-r / (rd * rng.uniform(0.6, 1.1)))
        cii += rng.uniform(0.0, 0.01) * cii.max() * np.exp(-r / rng.uniform(2.0, 4.0))
        norm = 1e-16 / ha.sum()
        sim = {"sim": f"synthsim{i + 1:02d}", "cii": cii * norm, "ha": ha * norm, "pixscale_kpc": float(pixscale_kpc),
               "label": SIM_LABEL}
        out.append(sim)
        if outdir is not None:
            write_sim_maps(sim, Path(outdir) / f"{sim['sim']}.fits")
    return out


def write_sim_maps(sim: dict, path) -> None:
    """Write one simulation's maps: extensions ``CII`` and ``HA``, ``PIXKPC`` [kpc]."""
    prim = fits.PrimaryHDU()
    prim.header["SIMNAME"] = sim["sim"]
    prim.header["PIXKPC"] = (sim["pixscale_kpc"], "pixel size [kpc]")
    if sim.get("label"):
        prim.header["MOCK"] = (True, "SYNTHETIC maps, not a simulation output")
        prim.header["COMMENT"] = sim["label"]
    hdus = [prim]
    for name in ("CII", "HA"):
        h = fits.Header()
        h["PIXKPC"] = sim["pixscale_kpc"]
        h["BUNIT"] = "erg / (s cm2)"
        hdus.append(fits.ImageHDU(np.asarray(sim[name.lower()], dtype=np.float32), header=h, name=name))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_sim_maps(path) -> dict:
    """Read a simulation map file (extensions ``CII``, ``HA``; ``PIXKPC`` in a header)."""
    path = Path(path)
    with _open(path, None, "simulation map file") as hdul:
        names = [h.name for h in hdul]
        for ext in ("CII", "HA"):
            if ext not in names:
                raise InputError(None, path, f"no {ext} extension",
                                 "give CII and HA image extensions with PIXKPC [kpc]")
        pix = hdul["CII"].header.get("PIXKPC", hdul[0].header.get("PIXKPC"))
        if pix is None:
            raise InputError(None, path, "no PIXKPC pixel scale", "set PIXKPC (pixel size in kpc) in the header")
        return {
            "sim": hdul[0].header.get("SIMNAME", path.stem),
            "cii": np.asarray(hdul["CII"].data, dtype=float),
            "ha": np.asarray(hdul["HA"].data, dtype=float),
            "pixscale_kpc": float(pix),
            "label": " ".join(str(c) for c in hdul[0].header.get("COMMENT", [])),
        }


def sim_tables(sims, **kw):
    """Profiles (``sim, r_kpc, ratio_norm, ratio``) and summary (``sim, ratio_inner, ratio_outer, ...``) tables."""
    import pandas as pd

    profs, summ = [], []
    for s in sims:
        prof, sm = sim_profiles(s["cii"], s["ha"], s["pixscale_kpc"], **kw)
        prof.insert(0, "sim", s["sim"])
        profs.append(prof[["sim", "r_kpc", "ratio_norm", "ratio"]])
        summ.append({"sim": s["sim"], **sm})
    cols = ["sim", "r_kpc", "ratio_norm", "ratio"]
    profiles = pd.concat(profs, ignore_index=True) if profs else pd.DataFrame(columns=cols)
    summary = pd.DataFrame(summ, columns=["sim", "ratio_inner", "ratio_outer", "delta_log", "r_drop_kpc"])
    return profiles, summary
