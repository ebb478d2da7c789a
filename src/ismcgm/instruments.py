"""The setup registry: every spectrograph setup the workflow can read, as data.

This module is **the one place to edit to add an instrument** (README,
"Adding an instrument").  Each :class:`Setup` declares its wavelength range
and channel width, its line-spread function, whether its wavelengths are in
air or vacuum, the cube reader that opens its files (a format registered in
:data:`ismcgm.io.CUBE_READERS`), the flux unit of its cubes and its
preference rank for lines seen by two setups.  Everything else derives from
:data:`SETUPS`: the sample-table columns ``cube_<setup>`` (wide table) or the
``setup`` values of a long table, the samples schema, the wildcard
constraint of ``{grating}``, the grating preference of
:func:`ismcgm.ratios.preferred_grating`, the overlap-table columns
(``flux_<OVERLAP_BASE>``) and the mock survey's cubes.

Line-spread functions
---------------------
* NIRSpec (G140M/H, G235M/H, G395M/H, PRISM/CLEAR): R(lambda) interpolated
  in the official JDox dispersion curves ``jwst_nirspec_<grating>_disp.fits``
  (columns WAVELENGTH [micron], DLDS [micron/pixel], R), packaged under
  ``ismcgm/data/nirspec/`` (see the README there: taken from the MIT-licensed
  ``msaexp`` repository of G. Brammer, which ships the files of the JWST
  User Documentation, "NIRSpec Dispersers and Filters",
  https://jwst-docs.stsci.edu/jwst-near-infrared-spectrograph/nirspec-instrumentation/nirspec-dispersers-and-filters).
  Outside the tabulated range R is held at the end value.
* MUSE WFM: the FWHM(lambda) polynomial of Bacon et al. (2017, A&A 608, A1,
  eq. 8, the MUSE Hubble Ultra Deep Field LSF):
  FWHM [A] = 5.866e-8 lambda^2 - 9.187e-4 lambda + 6.040 (lambda in A),
  i.e. R = lambda / FWHM ~ 1600 at 4800 A and ~ 3600 at 9300 A.

The LSF is a Gaussian of FWHM = lambda / R.

Wavelengths: the workflow works in vacuum wavelengths throughout; a setup
with ``air=True`` (MUSE) has its cube axis converted from air to vacuum by its
reader (:func:`air_to_vacuum_um`, Morton 2000 / the IAU standard, as in
``astropy``-affiliated tools), and the mock writes its axis in air.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np

from .constants import FWHM_PER_SIGMA

#: speed of light [km/s]
C_KMS = 299792.458


@cache
def _disp_table(filename: str) -> tuple[np.ndarray, np.ndarray]:
    """(wavelength [micron], R) of a packaged dispersion curve (FITS table, JDox format)."""
    from astropy.io import fits

    ref = resources.files("ismcgm") / "data" / "nirspec" / filename
    with resources.as_file(ref) as path, fits.open(path, memmap=False) as hdul:
        wave = np.asarray(hdul[1].data["WAVELENGTH"], dtype=float)
        r = np.asarray(hdul[1].data["R"], dtype=float)
    order = np.argsort(wave, kind="stable")
    return wave[order], r[order]


def dispersion_curve(setup: str | Setup) -> tuple[np.ndarray, np.ndarray]:
    """The packaged (wavelength [micron], R) table of a setup with a tabulated LSF."""
    s = setup if isinstance(setup, Setup) else get_setup(setup)
    if s.lsf_table is None:
        raise ValueError(f"setup {s.name!r} has no tabulated dispersion curve")
    return _disp_table(s.lsf_table)


@dataclass(frozen=True)
class Setup:
    """One spectrograph setup (instrument + grating/filter) of the registry.

    Attributes
    ----------
    name : str
        Lower-case name used in file names, tables and sample columns (``g235m``).
    instrument : str
        ``INSTRUME`` header value of its cubes (``NIRSPEC``, ``MUSE``).
    wmin_um, wmax_um : float
        Wavelength coverage of its cubes [micron] (in the setup's own air or vacuum convention).
    dlam_um : float
        Channel width of its cubes [micron] (pipeline default sampling; the
        workflow itself reads each cube's WCS, this is for the mock and the
        header checks).
    band : str
        Filter (``FILTER`` header value, NIRSpec) or mode: two setups of one
        band cover the same wavelengths, so a galaxy has at most one of them
        (G395H replaces G395M).
    rank : int
        Preference for a line measured in two setups (lower wins; SPEC 5:
        G395M/H over G235M).  The reference grid of the masks is the present
        setup of lowest rank.
    reader : str
        Cube format, a key of :data:`ismcgm.io.CUBE_READERS`.
    air : bool
        True when the cube's wavelength axis is in air (converted to vacuum on reading).
    flux_unit : str
        Unit of the cube's data (astropy string): ``MJy / sr`` (NIRSpec) or
        ``1e-20 erg / (s cm2 Angstrom)`` per spaxel (MUSE).
    lsf_table : str or None
        Packaged dispersion curve (``ismcgm/data/nirspec/<file>``) giving R(lambda).
    r_linear : tuple of float or None
        (R at wmin, R at wmax), linear in between (used where no table is given).
    fwhm_poly_A : tuple of float or None
        FWHM [A] as a polynomial in lambda [A], highest power first (MUSE).
    instrument_name : str
        The instrument's name in messages (default: ``instrument``).
    """

    name: str
    instrument: str
    wmin_um: float
    wmax_um: float
    dlam_um: float
    band: str
    rank: int
    reader: str = "nirspec_s3d"
    air: bool = False
    flux_unit: str = "MJy / sr"
    lsf_table: str | None = None
    r_linear: tuple[float, float] | None = None
    fwhm_poly_A: tuple[float, ...] | None = field(default=None)
    instrument_name: str = ""

    @property
    def instrument_label(self) -> str:
        """The instrument as written in messages (``NIRSpec``, ``MUSE``)."""
        return self.instrument_name or self.instrument

    @property
    def label(self) -> str:
        """Upper-case label used in FITS extension names and headers (``G235M``)."""
        return self.name.upper()

    def resolving_power(self, wavelength_um):
        """Resolving power R(lambda) at vacuum wavelengths [micron]."""
        w = np.asarray(wavelength_um, dtype=float)
        if self.lsf_table is not None:
            wave, r = _disp_table(self.lsf_table)
            return np.interp(w, wave, r)
        if self.fwhm_poly_A is not None:
            lam_A = w * 1e4
            return lam_A / np.polyval(self.fwhm_poly_A, lam_A)
        r_blue, r_red = self.r_linear
        frac = (w - self.wmin_um) / (self.wmax_um - self.wmin_um)
        return r_blue + (r_red - r_blue) * np.clip(frac, 0.0, 1.0)

    def lsf_sigma_kms(self, wavelength_um):
        """Gaussian sigma of the line-spread function [km/s]."""
        return C_KMS / self.resolving_power(wavelength_um) / FWHM_PER_SIGMA

    def wavelength_grid(self) -> np.ndarray:
        """Channel centres [micron] of its cubes, in the setup's own (air or vacuum) convention."""
        n = int(np.floor((self.wmax_um - self.wmin_um) / self.dlam_um)) + 1
        return self.wmin_um + self.dlam_um * np.arange(n)

    def vacuum_grid(self) -> np.ndarray:
        """Channel centres [micron] in vacuum (what the workflow reads from such a cube)."""
        w = self.wavelength_grid()
        return air_to_vacuum_um(w) if self.air else w

    def covers(self, wavelength_um, margin_um: float = 0.0):
        """True where the vacuum ``wavelength_um`` lies inside the coverage minus ``margin_um``."""
        w = np.asarray(wavelength_um, dtype=float)
        lo, hi = (air_to_vacuum_um(np.array([self.wmin_um, self.wmax_um])) if self.air
                  else (self.wmin_um, self.wmax_um))
        return (w >= lo + margin_um) & (w <= hi - margin_um)


def air_to_vacuum_um(wave_um):
    """Vacuum wavelengths [micron] of air wavelengths (Morton 2000, eq. 3; the IAU standard)."""
    w = np.asarray(wave_um, dtype=float)
    s2 = (1.0 / w) ** 2  # micron^-2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return w * n


def vacuum_to_air_um(wave_um):
    """Air wavelengths [micron] of vacuum wavelengths (Morton 2000, eq. 3)."""
    w = np.asarray(wave_um, dtype=float)
    s2 = (1.0 / w) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return w / n


def _nirspec(name, wmin, wmax, dlam, band, rank):
    return Setup(name, "NIRSPEC", wmin, wmax, dlam, band, rank, lsf_table=f"jwst_nirspec_{name}_disp.fits",
                 instrument_name="NIRSpec")


#: Every setup the workflow knows, in wavelength order (the order of a galaxy's setups).
#: Coverage and channel widths follow the JWST pipeline's default IFU cube sampling.
SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        _nirspec("prism", 0.60, 5.30, 0.005, "CLEAR", 7),
        _nirspec("g140m", 0.97, 1.89, 0.000636, "F100LP", 5),
        _nirspec("g140h", 0.97, 1.89, 0.000235, "F100LP", 6),
        _nirspec("g235m", 1.66, 3.07, 0.00106, "F170LP", 3),
        _nirspec("g235h", 1.66, 3.17, 0.000396, "F170LP", 4),
        _nirspec("g395m", 2.87, 5.10, 0.00179, "F290LP", 1),
        _nirspec("g395h", 2.87, 5.14, 0.000665, "F290LP", 2),
        Setup("muse", "MUSE", 0.4750, 0.9350, 0.000125, "WFM", 8, reader="muse", air=True,
              flux_unit="1e-20 erg / (s cm2 Angstrom)", fwhm_poly_A=(5.866e-8, -9.187e-4, 6.040)),
    )
}

#: The setup whose flux is the denominator of the overlap table (``flux_<OVERLAP_BASE>``,
#: ``ratio_red_over_<OVERLAP_BASE>``): the bluer setup of today's overlap lines.
OVERLAP_BASE = "g235m"


def get_setup(name: str) -> Setup:
    """The :class:`Setup` called ``name`` (case-insensitive)."""
    try:
        return SETUPS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown setup {name!r}: use one of {', '.join(SETUPS)}") from None


def cube_column(name: str) -> str:
    """Wide sample-table column of a setup's cube (``cube_g235m``)."""
    return f"cube_{name}"


#: Wide sample-table columns of every setup.
CUBE_COLUMNS = tuple(cube_column(s) for s in SETUPS)


def wildcard_pattern() -> str:
    """Regular expression of the ``{grating}`` wildcard (every setup name)."""
    return "|".join(SETUPS)


def preference_order(extra_first=()) -> tuple[str, ...]:
    """Setup names by preference rank (``extra_first``, e.g. ``combined``, ahead of all)."""
    return (*extra_first, *sorted(SETUPS, key=lambda s: SETUPS[s].rank))


def by_rank(names) -> list[str]:
    """``names`` (setups) sorted by preference rank, best first."""
    return sorted(names, key=lambda s: get_setup(s).rank)


def in_registry_order(names) -> list[str]:
    """``names`` (setups) in the registry's (wavelength) order."""
    names = set(names)
    return [s for s in SETUPS if s in names]


@dataclass(frozen=True)
class MockSurvey:
    """How the SYNTHETIC mock survey (config ``mock.instrument``) observes its galaxies.

    One per instrument of :data:`MOCK_SURVEYS`; :func:`ismcgm.mock.plan_survey` draws the galaxies with it.

    Attributes
    ----------
    setups : tuple of str
        Setups of every galaxy.
    swap : tuple of str or None
        ``(setup, replacement)`` for one galaxy of the survey (G395H instead of G395M).
    z_range, z_overlap : tuple of float
        Redshift range of the galaxies; a quarter of them at ``z_overlap``
        (where Hbeta/[O III] fall in two setups).
    ifu_pixscale : float
        Spaxel size [arcsec].
    ifu_psf_fwhm : tuple of float
        Range of the IFU PSF FWHM [arcsec].
    size_scale : float
        Factor on every angular size of the morphology (1: the z ~ 5 mock).
    image_filter : str or None
        Filter of every galaxy's continuum image (None: the NIRSpec survey's
        F444W/F277W by redshift and one F125W galaxy).
    alma : bool
        Whether the galaxies have an ALMA [C II] cube.
    """

    setups: tuple[str, ...]
    swap: tuple[str, str] | None
    z_range: tuple[float, float]
    z_overlap: tuple[float, float]
    ifu_pixscale: float
    ifu_psf_fwhm: tuple[float, float]
    size_scale: float = 1.0
    image_filter: str | None = None
    alma: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        """The ``cube_<setup>`` columns of its sample table."""
        names = [*self.setups, *(self.swap[1:] if self.swap else ())]
        return tuple(cube_column(s) for s in names)


#: The mock surveys (config ``mock.instrument``): NIRSpec at z = 4.4-5.7 (the paper's), MUSE WFM
#: at z = 0.3-0.4 (every line from [O II] to [S II] inside 0.475-0.935 micron, no [C II] cube).
MOCK_SURVEYS = {
    "nirspec": MockSurvey(("g235m", "g395m"), ("g395m", "g395h"), (4.4, 5.7), (5.0, 5.1), 0.1, (0.18, 0.21)),
    "muse": MockSurvey(("muse",), None, (0.30, 0.40), (0.30, 0.40), 0.2, (0.55, 0.70), size_scale=4.0,
                       image_filter="F814W", alma=False),
}
