"""Spectral extraction of mask regions from IFU cubes (SPEC section 4).

For every channel the spectrum is the sum of the mask's spaxels,

    F_lambda = sum_spaxels SCI [MJy/sr] * PIXAR_SR  ->  F_nu [MJy]  ->  F_lambda [erg/s/cm2/A]

(``astropy.units.spectral_density`` at the channel wavelength) and
``err = sqrt(sum ERR^2)`` converted the same way.  NaN spaxels are
*excluded*, not zeroed: a channel sums only its finite spaxels, and a channel
where every mask spaxel is NaN is NaN.

Masks on another grid
---------------------
Masks live on the aligned grid of the reference grating.  To extract from a
cube on another pixel grid (the other grating) the mask is carried through
the WCS: ``reproject_interp`` of the mask as float with
``order='nearest-neighbor'``, keeping values > 0.5, i.e. a spaxel of the
target cube belongs to the mask when its centre falls on a mask spaxel.
Both grids must be *aligned* WCSs (:func:`ismcgm.wcsutil.shifted_wcs` with the
galaxy's shift): pass the target cube's aligned WCS as ``cube_wcs``.  When
``mask_wcs`` describes the same grid as ``cube_wcs`` (to 1e-3 spaxel) and
the shapes agree the mask is used as it is.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from .io import Cube, atomic_path

#: Unit of the extracted spectra.
FLAMBDA_UNIT = u.erg / u.s / u.cm**2 / u.AA

#: Header keys written by :func:`write_spectrum` (from ``meta``, upper-cased).
SPECTRUM_KEYS = ("ID", "COMPONENT", "REGION", "GRATING", "Z", "VARIANT", "NSPAX")


class Spectrum(NamedTuple):
    """An extracted spectrum (:func:`read_spectrum`)."""

    wave_um: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    meta: dict


def flambda_factor(wave_um, pixar_sr: float) -> np.ndarray:
    """Factor converting MJy/sr in one spaxel to F_lambda [erg/s/cm2/A] per channel.

    Parameters
    ----------
    wave_um : array-like
        Channel wavelengths [micron].
    pixar_sr : float
        Spaxel solid angle [sr].
    """
    fnu = (1.0 * u.MJy / u.sr) * (pixar_sr * u.sr)
    return np.asarray(
        fnu.to_value(FLAMBDA_UNIT, equivalencies=u.spectral_density(np.asarray(wave_um, dtype=float) * u.um))
    )


def _same_grid(w1: WCS, w2: WCS, shape, tol_pix: float = 1e-3) -> bool:
    """True when two celestial WCSs map the grid's corners/centre to the same pixels."""
    ny, nx = shape
    x = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    y = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    ra, dec = w1.pixel_to_world_values(x, y)
    x2, y2 = w2.world_to_pixel_values(ra, dec)
    return bool(np.all(np.hypot(np.asarray(x2) - x, np.asarray(y2) - y) < tol_pix))


def carry_mask(mask, mask_wcs: WCS, target_wcs: WCS, target_shape) -> np.ndarray:
    """Carry a boolean mask onto another celestial grid (nearest spaxel centre).

    Parameters
    ----------
    mask : ndarray of bool (ny, nx)
    mask_wcs : astropy.wcs.WCS
        Celestial WCS of ``mask``.
    target_wcs : astropy.wcs.WCS
        Celestial WCS of the target grid.
    target_shape : (int, int)

    Returns
    -------
    ndarray of bool, ``target_shape``
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(target_shape) and _same_grid(mask_wcs.celestial, target_wcs.celestial, mask.shape):
        return mask.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from reproject import reproject_interp  # lazy: reproject pulls in dask (~0.5 s)

        out, _ = reproject_interp((mask.astype(float), mask_wcs.celestial), target_wcs.celestial,
                                  shape_out=tuple(target_shape), order="nearest-neighbor")
    return np.nan_to_num(out, nan=0.0) > 0.5


def _sum_region(cube: Cube, mask: np.ndarray, factor: np.ndarray):
    sel = np.asarray(mask, dtype=bool)
    sci = cube.sci[:, sel]  # (n_wave, n_spax)
    err = cube.err[:, sel]
    good = np.isfinite(sci) & np.isfinite(err)
    n = good.sum(axis=1)
    flux = np.where(good, sci, 0.0).sum(axis=1)
    var = np.where(good, err, 0.0) ** 2
    e = np.sqrt(var.sum(axis=1))
    flux = np.where(n > 0, flux * factor, np.nan)
    e = np.where(n > 0, e * factor, np.nan)
    return flux, e


def extract_spectrum(cube: Cube, mask, mask_wcs: WCS | None = None, cube_wcs: WCS | None = None):
    """Sum a cube over the spaxels of a mask.

    Parameters
    ----------
    cube : ismcgm.io.Cube
        SCI/ERR in MJy/sr.
    mask : ndarray of bool (ny_mask, nx_mask)
        Region mask.
    mask_wcs : astropy.wcs.WCS, optional
        Celestial WCS of the mask (aligned).  ``None``: the mask is on the
        cube grid (shapes must agree).
    cube_wcs : astropy.wcs.WCS, optional
        Aligned celestial WCS of the cube (default: ``cube.wcs``).  Give it
        whenever ``mask_wcs`` is an aligned WCS, otherwise the alignment
        shift would be applied as a grid offset.

    Returns
    -------
    wave_um, flux, err : ndarray (n_wave,)
        Wavelength [micron]; flux and 1-sigma [erg/s/cm2/A].
    """
    mask = _mask_on_cube(cube, mask, mask_wcs, cube_wcs)
    flux, err = _sum_region(cube, mask, flambda_factor(cube.wave_um, cube.pixar_sr))
    return cube.wave_um.copy(), flux, err


def _mask_on_cube(cube, mask, mask_wcs, cube_wcs):
    shape = cube.sci.shape[1:]
    mask = np.asarray(mask, dtype=bool)
    if mask_wcs is None:
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} differs from the cube grid {shape} and no mask WCS given")
        return mask
    return carry_mask(mask, mask_wcs, cube_wcs if cube_wcs is not None else cube.wcs, shape)


def region_spectra(cube: Cube, masks: dict, mask_wcs: WCS | None = None, cube_wcs: WCS | None = None) -> dict:
    """Spectra of several regions from one cube in memory.

    Parameters
    ----------
    cube : ismcgm.io.Cube
    masks : dict
        ``{name: bool array}`` (e.g. :func:`ismcgm.maskio.read_masks`).
    mask_wcs, cube_wcs : astropy.wcs.WCS, optional
        As in :func:`extract_spectrum`.

    Returns
    -------
    dict
        ``{name: (wave_um, flux, err, n_spaxels)}`` where ``n_spaxels`` is
        the number of mask spaxels on the cube grid.
    """
    factor = flambda_factor(cube.wave_um, cube.pixar_sr)
    out = {}
    for name, m in masks.items():
        mm = _mask_on_cube(cube, m, mask_wcs, cube_wcs)
        flux, err = _sum_region(cube, mm, factor)
        out[name] = (cube.wave_um.copy(), flux, err, int(mm.sum()))
    return out


def write_spectrum(path, wave_um, flux, err, meta=None) -> None:
    """Write a spectrum as a FITS binary table (atomic).

    Columns ``wavelength`` [um], ``flux`` and ``err`` [erg/s/cm2/A] with
    TUNIT; ``meta`` goes into the table header (keys upper-cased; usually
    ``ID, COMPONENT, REGION, GRATING, Z, VARIANT, NSPAX``).
    """
    t = Table()
    t["wavelength"] = np.asarray(wave_um, dtype=float) * u.um
    t["flux"] = np.asarray(flux, dtype=float) * FLAMBDA_UNIT
    t["err"] = np.asarray(err, dtype=float) * FLAMBDA_UNIT
    hdu = fits.table_to_hdu(t)
    hdu.name = "SPECTRUM"
    for k, v in (meta or {}).items():
        if v is None:
            continue
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            v = v.item()
        key = str(k).upper()
        hdu.header[key if len(key) <= 8 else f"HIERARCH {key}"] = v
    hdu.header["FLUXUNIT"] = FLAMBDA_UNIT.to_string()
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)


def read_spectrum(path) -> Spectrum:
    """Read a spectrum written by :func:`write_spectrum`.

    Returns
    -------
    Spectrum
        ``(wave_um, flux, err, meta)``; ``meta`` holds the header keys of
        :data:`SPECTRUM_KEYS` that are present (``Z`` as float, ``NSPAX``
        as int).
    """
    with fits.open(path, memmap=False) as hdul:
        hdu = hdul["SPECTRUM"] if "SPECTRUM" in hdul else hdul[1]
        t = Table.read(hdu)
        hdr = hdu.header
        meta = {k: hdr[k] for k in SPECTRUM_KEYS if k in hdr}
    wave = u.Quantity(t["wavelength"]).to_value(u.um)
    flux = u.Quantity(t["flux"]).to_value(FLAMBDA_UNIT)
    err = u.Quantity(t["err"]).to_value(FLAMBDA_UNIT)
    return Spectrum(np.asarray(wave, float), np.asarray(flux, float), np.asarray(err, float), meta)


def sum_region(sci: np.ndarray, mask: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """NaN-aware sum of a (perturbed) SCI cube over ``mask``, in F_lambda.

    The flux part of the extraction, for Monte Carlo realisations drawn on
    the cube (``mc.level: cube``): NaN spaxels are excluded per channel; a
    channel with no valid spaxel is NaN.
    """
    s = np.asarray(sci)[:, np.asarray(mask, dtype=bool)]
    good = np.isfinite(s)
    flux = np.where(good, s, 0.0).sum(axis=1)
    return np.where(good.any(axis=1), flux * factor, np.nan)
