"""Continuum-subtracted line maps of an IFU cube and their noise (Fig. 1, the [C II] beam-spill transfer matrix, the Voronoi bins' S/N, the halo fit of the decomposition)."""

from __future__ import annotations

import warnings

import numpy as np

from . import instrument as ins
from .errors import InputError
from .extract import flambda_factor
from .io import Cube


#: Velocity range [km/s] either side of the line whose channels give the continuum (:func:`line_map`).
CONTINUUM_KMS = (2000.0, 4000.0)


# --------------------------------------------------------------------------
# line map (Fig. 1)
# --------------------------------------------------------------------------
def line_map(cube: Cube, z: float, line: str = "HA", window_kms: float = 500.0,
             continuum_kms=CONTINUUM_KMS) -> np.ndarray:
    """Continuum-subtracted line map [erg/s/cm2 per spaxel] by a window collapse.

    The line is summed over channels within ``window_kms`` of its redshifted
    wavelength; the continuum is the per-spaxel median of the channels
    between ``continuum_kms[0]`` and ``continuum_kms[1]`` on both sides,
    with channels near other lines removed (see :func:`collapse_continuum`).

    Parameters
    ----------
    cube : ismcgm.io.Cube
    z : float
    line : str
        A name of :data:`ismcgm.instrument.LINE_WAVELENGTHS`.
    window_kms : float
    continuum_kms : (float, float)

    Returns
    -------
    ndarray (ny, nx)
        Line flux per spaxel (NaN where the spaxel has no valid channel).
    """
    data, err, w_in, s_in, dlam_A = _used_channels(cube, z, line, window_kms, continuum_kms)
    return _collapse(data[w_in], data[s_in] if s_in.any() else None, dlam_A)


def _channels(cube: Cube, z: float, line: str, window_kms: float, continuum_kms):
    """The line window and the continuum channels of :func:`line_map` (boolean over the channels)."""
    lam0 = ins.observed_wavelength_um(line, z)
    dv = (cube.wave_um / lam0 - 1.0) * ins.C_KMS
    win = np.abs(dv) <= window_kms
    if not win.any():
        raise InputError(None, cube.path, f"{line} at z={z} is outside the cube",
                         "check the redshift and the cube's wavelength range")
    others = np.ones_like(win)
    for lam in ins.TRANSITIONS.values():
        others &= np.abs(cube.wave_um / (lam * (1 + z) * 1e-4) - 1.0) * ins.C_KMS > window_kms + 500.0
    side = (np.abs(dv) >= continuum_kms[0]) & (np.abs(dv) <= continuum_kms[1]) & others
    return win, side


def _used_channels(cube: Cube, z: float, line: str, window_kms: float, continuum_kms):
    """SCI and ERR [erg/s/cm2/A per spaxel] of only the channels :func:`line_map` uses, which of them are the
    window and the continuum, and the window's channel widths [A]."""
    win, side = _channels(cube, z, line, window_kms, continuum_kms)
    use = win | side
    fl = flambda_factor(cube.wave_um, cube.pixar_sr)[use][:, None, None]  # MJy/sr -> erg/s/cm2/A per spaxel
    return cube.sci[use] * fl, cube.err[use] * fl, win[use], side[use], np.gradient(cube.wave_um)[win] * 1e4


def _collapse(window, continuum, dlam_A):
    """Window sum minus the continuum median [flux per spaxel] (``continuum`` None: no continuum)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cont = np.nanmedian(continuum, axis=0) if continuum is not None else np.zeros(window.shape[1:])
        sub = (window - cont[None]) * dlam_A[:, None, None]
        out = np.nansum(sub, axis=0)
        out[~np.any(np.isfinite(window), axis=0)] = np.nan
    return out


def line_map_realisations(cube: Cube, z: float, line: str, rng_of, realisations, window_kms: float = 500.0,
                          continuum_kms=CONTINUUM_KMS) -> np.ndarray:
    """:func:`line_map` of Monte Carlo realisations of the cube: every channel it uses redrawn within ERR.

    Realisation ``i`` adds ``ERR x N(0, 1)`` (independent per spaxel and
    channel, as the cube's ERR describes it) to the window and continuum
    channels, drawn from ``rng_of(i)``, and collapses them as :func:`line_map`
    does (so the continuum median's noise is in it too).

    Returns
    -------
    ndarray (n_realisations, ny, nx)
    """
    data, err, w_in, s_in, dlam_A = _used_channels(cube, z, line, window_kms, continuum_kms)
    out = []
    for i in realisations:
        d = data + err * rng_of(int(i)).standard_normal(data.shape)
        out.append(_collapse(d[w_in], d[s_in] if s_in.any() else None, dlam_A))
    return np.asarray(out)


def line_snr_maps(cube, z: float, line: str = "HA", window_kms: float = 500.0):
    """Signal (:func:`line_map`) and noise maps of one line [erg/s/cm2 per spaxel]."""
    signal = line_map(cube, z, line, window_kms)
    win, _ = _channels(cube, z, line, window_kms, CONTINUUM_KMS)
    fl = flambda_factor(cube.wave_um, cube.pixar_sr) * np.gradient(cube.wave_um) * 1e4
    e = cube.err[win] * fl[win][:, None, None]
    noise = np.sqrt(np.nansum(e**2, axis=0))
    return signal, np.where(noise > 0, noise, np.nan)
