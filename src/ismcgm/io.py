"""Readers for the workflow's inputs, with one-line errors, and atomic writes.

Every reader checks what the later stages rely on and raises
:class:`InputError` with a single line naming the galaxy, the file and the
fix.  Writers go through :func:`atomic_path` so that an interrupted job never
leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

import warnings

from .errors import InputError
from .instruments import air_to_vacuum_um, get_setup
from .samples import (  # noqa: F401  (re-exported: the sample table lives in ismcgm.samples)
    OPTIONAL_SAMPLE_COLUMNS,
    REQUIRED_SAMPLE_COLUMNS,
    check_sample_table,
    galaxy_gratings,
    parse_components,
    read_sample_table,
    reference_grating,
)

if TYPE_CHECKING:
    import pandas as pd

# --------------------------------------------------------------------------
# atomic output
# --------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is not
    created, so a killed or failed job never leaves a half-written output.
    The temporary name keeps the final suffix so that writers which infer the
    format from the extension (astropy, matplotlib, pandas) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix="".join(path.suffixes) or ".tmp", dir=path.parent
    )
    os.close(fd)
    os.unlink(tmp)  # writers that refuse to overwrite (astropy) need no file there
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_table(df: pd.DataFrame, path, comment: str | None = None) -> None:
    """Write ``df`` as CSV atomically, with an optional ``#`` comment header."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:  # noqa: SIM117
            if comment:
                for line in comment.strip().splitlines():
                    fh.write(f"# {line}\n")
            df.to_csv(fh, index=False, float_format="%.10g", lineterminator="\n")


#: Cells read as missing by :func:`read_table`: what :func:`write_table` writes for NaN (pandas'
#: default list would also turn words such as ``null`` -- a ``kind`` of ``d11_draws.csv`` -- into NaN).
TABLE_NA_VALUES = ("", "nan", "NaN", "<NA>")


def read_table(path) -> pd.DataFrame:
    """Read a CSV written by :func:`write_table` (``#`` lines are comments)."""
    import pandas as pd

    return pd.read_csv(path, comment="#", keep_default_na=False, na_values=list(TABLE_NA_VALUES))


def read_chunks(paths) -> pd.DataFrame:
    """Read and concatenate the Monte Carlo chunk tables (parquet), checking each one.

    A chunk that cannot be read (truncated, e.g. by a kill while the
    filesystem kept its mtime), is empty, or has other columns than the
    first one raises :class:`InputError` naming that chunk: delete it and run
    the same command again, Snakemake recomputes only that chunk.
    """
    import pandas as pd

    fix = "delete that chunk file and run the same snakemake command again (only it is recomputed)"
    parts, columns = [], None
    for path in paths:
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001  (pyarrow raises several types for a damaged file)
            raise InputError(None, path, f"unreadable Monte Carlo chunk ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})", fix) from None
        if df.empty:
            raise InputError(None, path, "empty Monte Carlo chunk (no realisations)", fix)
        if columns is None:
            columns = list(df.columns)
        elif list(df.columns) != columns:
            raise InputError(None, path, f"Monte Carlo chunk with columns {list(df.columns)}, not {columns} "
                             "(written by another version?)", fix)
        parts.append(df)
    if not parts:
        raise InputError(None, "results/mc", "no Monte Carlo chunks to gather", "check mc.n_realisations")
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------
# FITS readers
# --------------------------------------------------------------------------
_MJYSR = u.MJy / u.sr


def _quiet_wcs(header, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, **kw)


def _open(path, galaxy, what):
    if not Path(path).is_file():
        raise InputError(galaxy, path, f"{what} not found", "check the path in the sample table")
    try:
        return fits.open(path, memmap=False)
    except OSError as exc:
        raise InputError(galaxy, path, f"not a readable FITS file ({exc})", "re-download or regenerate it") from None


@dataclass
class Cube:
    """A NIRSpec IFU stage-3 cube held in memory, in canonical order.

    ``sci`` and ``err`` are (n_wave, ny, nx) arrays in MJy/sr, ``wave_um`` the
    channel centres in micron, always ascending (a file stored in descending
    wavelength is reversed on reading, so results do not depend on the storage
    order), ``wcs`` the celestial WCS, ``pixar_sr`` the spaxel solid angle,
    ``header`` the SCI header as stored in the file.
    """

    path: str
    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray | None
    wave_um: np.ndarray
    wcs: WCS
    pixar_sr: float
    header: fits.Header

    @property
    def valid_spaxels(self) -> np.ndarray:
        """Spaxels with at least one finite SCI value and positive ERR."""
        good = np.isfinite(self.sci) & np.isfinite(self.err) & (self.err > 0)
        return good.any(axis=0)


def ascending_wavelength(wave, sci, err, dq, galaxy, path):
    """The canonical order: ascending wavelength, whatever the file's (CDELT3 < 0 or a reversed WCS-TAB axis)."""
    if wave.size > 1 and wave[-1] < wave[0]:
        wave, sci, err = wave[::-1].copy(), sci[::-1].copy(), err[::-1].copy()
        dq = dq[::-1].copy() if dq is not None else None
    if wave.size > 1 and not np.all(np.diff(wave) > 0):
        raise InputError(galaxy, path, "wavelength axis is not monotonic",
                         "give a cube whose channels are ordered in wavelength")
    return wave, sci, err, dq


def read_cube(path, galaxy=None) -> Cube:
    """Read a cube of any registered format (:data:`CUBE_FORMATS`), in ascending wavelength: NIRSpec
    ``_s3d.fits`` (SCI, ERR in MJy/sr, optional DQ) or MUSE (DATA, STAT, :func:`read_muse_cube`)."""
    with _open(path, galaxy, "cube") as hdul:
        names = [h.name for h in hdul]
        fmt = identify_cube_format(names)
        if fmt != "nirspec_s3d":
            return CUBE_FORMATS[fmt].reader(hdul, path, galaxy)
        for ext in ("SCI", "ERR"):
            if ext not in names:
                raise InputError(galaxy, path, f"no {ext} extension", "give the stage-3 _s3d.fits cube (PRIMARY, SCI, ERR, DQ)")
        hdr = hdul["SCI"].header
        for ext in ("SCI", "ERR"):
            check_unit(galaxy, path, hdul[ext].header, ext, _MJYSR)
        sci = np.asarray(hdul["SCI"].data, dtype=float)
        err = np.asarray(hdul["ERR"].data, dtype=float)
        dq = np.asarray(hdul["DQ"].data) if "DQ" in names else None
        if sci.ndim != 3 or err.shape != sci.shape:
            raise InputError(galaxy, path, f"SCI has shape {sci.shape}, ERR {err.shape}; expected matching 3-D cubes", "give the stage-3 _s3d.fits cube")
        w3 = _quiet_wcs(hdr)
        if w3.naxis != 3 or not w3.has_spectral or w3.wcs.spec < 0:
            raise InputError(galaxy, path, "SCI WCS has no spectral axis", "give a cube whose third WCS axis is WAVE in micron")
        spec = w3.sub([w3.wcs.spec + 1])
        n = sci.shape[0]
        wave = spec.pixel_to_world_values(np.arange(n))
        wave = np.asarray(wave, dtype=float) * u.Unit(spec.wcs.cunit[0]).to(u.um)
        wave, sci, err, dq = ascending_wavelength(wave, sci, err, dq, galaxy, path)
        celestial = w3.celestial
        pixar = hdr.get("PIXAR_SR")
        if pixar is None:
            scales = celestial.proj_plane_pixel_scales()
            pixar = float((scales[0] * scales[1]).to_value(u.sr))
        if dq is not None:
            sci = np.where(dq & 1, np.nan, sci)  # DO_NOT_USE
        bad = ~(np.isfinite(sci) & np.isfinite(err))
        if np.all(bad):
            raise InputError(galaxy, path, "cube has no valid spaxels (all SCI/ERR NaN)", "check the reduction; the cube is empty")
        good_err = err[~bad]
        if np.any(good_err <= 0):
            raise InputError(galaxy, path, "ERR <= 0 where SCI is valid", "give a positive error cube (or flag those voxels NaN/DQ)")
        sci[bad] = np.nan
        err[bad] = np.nan
        return Cube(str(path), sci, err, dq, wave, celestial, float(pixar), hdr)


# --------------------------------------------------------------------------
# cube formats: one reader per format, as specutils registers its loaders
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class CubeFormat:
    """A cube file format: its data and error extensions and its reader.

    ``err_is_variance``: the error extension holds the variance (MUSE STAT);
    ``filter_keyword``: the primary header's ``FILTER`` names the setup's band (NIRSpec).
    """

    name: str
    data: str
    err: str
    description: str
    err_is_variance: bool = False
    filter_keyword: bool = True
    reader: object = None

    def err_power(self, ext: str) -> int:
        """Power of the data unit that extension ``ext`` carries (2 for a variance)."""
        return 2 if (ext == self.err and self.err_is_variance) else 1


def _parse_unit(bunit):
    """``BUNIT`` as an astropy unit; also MUSE's ``(10**(-20)*erg/s/cm**2/Angstrom)**2``; None if unparsable."""
    if not bunit:
        return None
    text, power = str(bunit).strip(), 1
    if text.startswith("(") and text.endswith(")**2"):
        text, power = text[1:-4], 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            return u.Unit(text) ** power
    except ValueError:
        return None


def check_unit(galaxy, path, header, ext, expected) -> None:
    """``BUNIT`` of extension ``ext`` must equal ``expected`` (an astropy unit, squares allowed)."""
    bunit = header.get("BUNIT")
    unit = _parse_unit(bunit)
    if unit is None or unit != expected:
        raise InputError(
            galaxy, path, f"extension {ext} has BUNIT={bunit!r}, expected {expected.to_string()}",
            f"convert the data to {expected.to_string()} and set BUNIT",
        )


def _muse_flux_to_mjysr(wave_um, pixar_sr) -> np.ndarray:
    """Factor turning MUSE data [1e-20 erg/s/cm2/A per spaxel] into MJy/sr at each wavelength."""
    unit = u.Unit(get_setup("muse").flux_unit)
    fnu = (1.0 * unit).to(u.MJy, equivalencies=u.spectral_density(np.asarray(wave_um) * u.um))
    return fnu.value / pixar_sr


def read_muse_cube(hdul, path, galaxy=None) -> Cube:
    """Read a MUSE cube (DATA, STAT = variance, in 1e-20 erg/s/cm2/A per spaxel; AWAV axis in air).

    Returned like a NIRSpec cube: SCI/ERR in MJy/sr (with ``pixar_sr`` the
    spaxel solid angle, so that :func:`ismcgm.extract.flambda_factor` gives
    back erg/s/cm2/A) and ``wave_um`` in **vacuum** (the setup's ``air`` flag,
    converted with :func:`ismcgm.instruments.air_to_vacuum_um`).
    """
    setup = get_setup("muse")
    unit = u.Unit(setup.flux_unit)
    hdr = hdul["DATA"].header
    check_unit(galaxy, path, hdr, "DATA", unit)
    check_unit(galaxy, path, hdul["STAT"].header, "STAT", unit**2)
    data = np.asarray(hdul["DATA"].data, dtype=float)
    var = np.asarray(hdul["STAT"].data, dtype=float)
    if data.ndim != 3 or var.shape != data.shape:
        raise InputError(galaxy, path, f"DATA has shape {data.shape}, STAT {var.shape}; expected matching 3-D cubes",
                         "give the MUSE DATACUBE (DATA, STAT)")
    w3 = _quiet_wcs(hdr)
    if w3.naxis != 3 or not w3.has_spectral or w3.wcs.spec < 0:
        raise InputError(galaxy, path, "DATA WCS has no spectral axis", "give a cube whose third WCS axis is AWAV")
    spec = w3.sub([w3.wcs.spec + 1])
    wave = np.asarray(spec.pixel_to_world_values(np.arange(data.shape[0])), dtype=float)
    wave = wave * u.Unit(spec.wcs.cunit[0]).to(u.um)
    if setup.air or str(spec.wcs.ctype[0]).upper().startswith("AWAV"):
        wave = air_to_vacuum_um(wave)
    wave, data, var, _ = ascending_wavelength(wave, data, var, None, galaxy, path)
    celestial = w3.celestial
    scales = celestial.proj_plane_pixel_scales()
    pixar = float((scales[0] * scales[1]).to_value(u.sr))
    bad = ~(np.isfinite(data) & np.isfinite(var))
    if np.all(bad):
        raise InputError(galaxy, path, "cube has no valid spaxels (all DATA/STAT NaN)", "check the reduction")
    if np.any(var[~bad] <= 0):
        raise InputError(galaxy, path, "STAT <= 0 where DATA is valid", "give a positive variance (or flag NaN)")
    conv = _muse_flux_to_mjysr(wave, pixar)[:, None, None]
    sci = np.where(bad, np.nan, data * conv)
    err = np.where(bad, np.nan, np.sqrt(np.where(bad, 1.0, var)) * conv)
    return Cube(str(path), sci, err, None, wave, celestial, pixar, hdr)


#: The cube formats, keyed by the ``reader`` name a setup of :mod:`ismcgm.instruments` gives.
CUBE_FORMATS = {
    "nirspec_s3d": CubeFormat("nirspec_s3d", "SCI", "ERR", "stage-3 _s3d.fits cube (PRIMARY, SCI, ERR, DQ)"),
    "muse": CubeFormat("muse", "DATA", "STAT", "MUSE DATACUBE (PRIMARY, DATA, STAT)", err_is_variance=True,
                       filter_keyword=False, reader=read_muse_cube),
}


def identify_cube_format(names) -> str:
    """The format of a cube file from its extension names (DATA + STAT: MUSE; otherwise NIRSpec)."""
    names = set(names)
    for name, fmt in CUBE_FORMATS.items():
        if name != "nirspec_s3d" and {fmt.data, fmt.err} <= names:
            return name
    return "nirspec_s3d"


@dataclass
class Image:
    """A continuum image (data in MJy/sr, converted on reading) with its celestial WCS.

    ``to_mjysr`` is the factor that was applied to the file's values (1 for an
    image stored in MJy/sr); ``header`` is the data extension's header as stored.
    """

    path: str
    data: np.ndarray
    wcs: WCS
    header: fits.Header
    to_mjysr: float = 1.0


#: HST spellings of count units that astropy does not read (``ELECTRONS/S``, ``COUNTS/S``, ``CPS``, ``e-/s``).
_COUNT_SPELLINGS = (
    (re.compile(r"\belectrons?\b|\be-(?=[\s/*.]|$)", re.I), "electron"),
    (re.compile(r"\bcps\b", re.I), "count/s"),
    (re.compile(r"\b(counts?|dn)\b", re.I), "count"),
    (re.compile(r"/\s*s(ec)?\b", re.I), "/s"),
)
_RATES = (u.electron / u.s, u.count / u.s)
_IMAGE_UNIT_FIX = ("set BUNIT to the image's unit: MJy/sr, any flux (density) unit astropy reads (nJy, uJy/arcsec2, "
                   "erg/s/cm2/Angstrom with PHOTPLAM), or ELECTRONS/S with PHOTFNU or PHOTFLAM+PHOTPLAM")


def parse_image_unit(bunit) -> u.UnitBase | None:
    """The astropy unit of an image's ``BUNIT``, reading HST's count spellings; None when unreadable."""
    text = str(bunit or "").strip()
    if not text:
        return None
    for cand in (text, _hst_spelling(text)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            try:
                unit = u.Unit(cand, parse_strict="silent")
            except (ValueError, TypeError):
                continue
        if not isinstance(unit, u.UnrecognizedUnit):
            return unit
    return None


def _hst_spelling(text: str) -> str:
    for pattern, repl in _COUNT_SPELLINGS:
        text = pattern.sub(repl, text)
    return text


def _keyword(headers, key):
    for h in headers:
        if h is not None and h.get(key) not in (None, ""):
            return h[key]
    return None


def image_unit_factor(galaxy, path, header, primary=None) -> float:
    """Factor that brings an image's values to MJy/sr, from its headers alone.

    ``BUNIT`` (data extension, else primary) may be a surface brightness
    (MJy/sr, uJy/arcsec2, ...), a flux density per pixel (nJy, erg/s/cm2/A:
    divided by the pixel area, ``PIXAR_SR`` or the WCS's), a count rate
    (HST ``ELECTRONS/S``, ``COUNTS/S``: times ``PHOTFNU`` [Jy s / count], else
    ``PHOTFLAM`` [erg/cm2/A / count] at ``PHOTPLAM`` [A]) or counts (divided by
    ``EXPTIME`` first).  The photometry keywords are looked up in the data
    extension, then the primary header (HST ``_drz``/``_drc`` files carry
    them in either).  Anything else raises a one-line :class:`InputError`.
    """
    headers = (header, primary)
    ext = header.get("EXTNAME", "PRIMARY")
    bunit = _keyword(headers, "BUNIT")
    unit = parse_image_unit(bunit)
    if unit is None:
        raise InputError(galaxy, path, f"extension {ext} has BUNIT={bunit!r}, not a unit astropy reads",
                         _IMAGE_UNIT_FIX)
    value = 1.0 * unit
    if any(value.unit.is_equivalent(r * u.s) for r in _RATES):
        exptime = _keyword(headers, "EXPTIME")
        if exptime is None or not float(exptime) > 0:
            raise InputError(galaxy, path, f"BUNIT={bunit!r} (counts) but no positive EXPTIME to make a count rate",
                             "add EXPTIME [s] to the header (or give the count-rate _drz image)")
        value = value / (float(exptime) * u.s)
    plam = _keyword(headers, "PHOTPLAM")
    rate = next((r for r in _RATES if value.unit.is_equivalent(r)), None)
    if rate is not None:
        fnu, flam = _keyword(headers, "PHOTFNU"), _keyword(headers, "PHOTFLAM")
        if fnu is not None and float(fnu) > 0:
            value = value.to_value(rate) * float(fnu) * u.Jy
        elif flam is not None and float(flam) > 0 and plam is not None and float(plam) > 0:
            value = value.to_value(rate) * float(flam) * u.erg / u.s / u.cm**2 / u.AA
        else:
            raise InputError(galaxy, path, f"BUNIT={bunit!r} but no PHOTFNU (nor PHOTFLAM and PHOTPLAM) to convert "
                             "it to MJy/sr", "add the HST photometry keywords PHOTFNU or PHOTFLAM+PHOTPLAM of the "
                             "filter to the header (from the original _drz/_flt file), or give the image in MJy/sr")
    equiv = u.spectral_density(float(plam) * u.AA) if plam is not None and float(plam) > 0 else []
    if not value.unit.is_equivalent(_MJYSR, equiv) and (value / u.sr).unit.is_equivalent(_MJYSR, equiv):
        value = value / (_pixel_area_sr(header, primary) * u.sr)  # per pixel -> per steradian
    try:
        return float(value.to_value(_MJYSR, equiv))
    except u.UnitConversionError:
        need = " (a flux density per wavelength needs PHOTPLAM)" if not equiv else ""
        raise InputError(galaxy, path, f"extension {ext} has BUNIT={bunit!r}, which cannot be converted to "
                         f"MJy/sr{need}", _IMAGE_UNIT_FIX) from None


def _pixel_area_sr(header, primary) -> float:
    pixar = _keyword((header, primary), "PIXAR_SR")
    if pixar is not None:
        return float(pixar)
    return float(_quiet_wcs(header).celestial.proj_plane_pixel_area().to_value(u.sr))


def _image_hdu(hdul):
    """The image extension: ``SCI`` (``_i2d``, ``_drz``/``_drc``: SCI/WHT/CTX), else the primary (one-HDU mosaics)."""
    names = [h.name for h in hdul]
    return hdul["SCI"] if "SCI" in names else hdul[0]


def read_image(path, galaxy=None) -> Image:
    """Read a continuum image and bring it to MJy/sr.

    Layouts: NIRCam ``_i2d`` (SCI, ERR, WHT, ...), HST ``_drz``/``_drc``
    (SCI, WHT, CTX) or a single-HDU mosaic.  Units: see
    :func:`image_unit_factor` (MJy/sr, any flux unit astropy reads, HST
    counts or count rates with their photometry keywords).
    """
    with _open(path, galaxy, "image") as hdul:
        hdu = _image_hdu(hdul)
        if hdu.data is None or hdu.data.ndim != 2:
            raise InputError(galaxy, path, "no 2-D SCI image", "give the _i2d.fits image with a SCI extension")
        wcs = _quiet_wcs(hdu.header)
        if not wcs.has_celestial or wcs.naxis != 2:
            raise InputError(galaxy, path, "image has no celestial WCS", "give an image with RA/Dec WCS keywords")
        factor = image_unit_factor(galaxy, path, hdu.header, hdul[0].header if hdu is not hdul[0] else None)
        data = np.asarray(hdu.data, dtype=float)
        if factor != 1.0:
            data = data * factor
        return Image(str(path), data, wcs, hdu.header, factor)
