"""Dust attenuation: the Calzetti et al. (2000) curve and the Balmer decrement.

SPEC section 6.  The nebular colour excess follows from the Balmer
decrement with an intrinsic Ha/Hb = 2.86 (case B, T = 10^4 K):

    E(B-V)_gas = 2.5 / (k(Hb) - k(Ha)) * log10((Ha/Hb)_obs / 2.86),

set to 0 where the observed ratio is below 2.86, and a flux is corrected as
``F_corr = F_obs * 10**(0.4 * k(lambda) * E(B-V)_gas)``.  With the Calzetti
curve, k(Hb) = 4.60 and k(Ha) = 3.32-3.33 (the often-quoted 3.61 and 2.53
are the Cardelli et al. 1989 Milky-Way values), so 2.5 / (k(Hb) - k(Ha)) =
1.96.

Errors are propagated by Monte Carlo: every function here is vectorised, so
the workflow computes E(B-V) and the corrected fluxes realisation by
realisation from the Ha and Hb fluxes of the same Monte Carlo realisation
and takes median and standard deviation afterwards (no linearisation).

Wavelengths are rest-frame.  The curve is defined in micron; plain numbers
are taken as micron (:func:`calzetti_k`) or Angstrom (:func:`correct`), an
:class:`astropy.units.Quantity` in any length unit is converted.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u

from . import instrument

__all__ = [
    "R_V",
    "INTRINSIC_HA_HB",
    "F_STELLAR_NEBULAR",
    "calzetti_k",
    "k_line",
    "ebv_from_balmer",
    "ebv_realisations",
    "ebv_stellar",
    "correct",
]

#: Total-to-selective attenuation R'_V of the Calzetti et al. (2000) curve.
R_V = 4.05

#: Intrinsic (case B, 10^4 K) Ha/Hb ratio.
INTRINSIC_HA_HB = 2.86

#: Stellar-to-nebular colour-excess ratio, E(B-V)_star = f E(B-V)_gas
#: (the value the paper adopts; a config value of the workflow, used for the
#: stellar continuum only, never for emission lines).
F_STELLAR_NEBULAR = 0.56

#: Wavelength range of the Calzetti et al. (2000) curve [micron].
CALZETTI_RANGE_UM = (0.12, 2.20)

#: Boundary between the two branches of the curve [micron].
_BRANCH_UM = 0.63


def _to_micron(wavelength, default_unit):
    if isinstance(wavelength, u.Quantity):
        return np.asarray(wavelength.to_value(u.um), dtype=float)
    return np.asarray(wavelength, dtype=float) * default_unit.to(u.um)


def calzetti_k(wavelength, r_v=R_V, extrapolate=False):
    """Calzetti et al. (2000) attenuation curve k'(lambda) (their eq. 4).

    ``k = 2.659 (-2.156 + 1.509/x - 0.198/x**2 + 0.011/x**3) + R_V`` for
    0.12 <= x < 0.63 micron and ``k = 2.659 (-1.857 + 1.040/x) + R_V`` for
    0.63 <= x <= 2.20 micron.

    Parameters
    ----------
    wavelength : float, array_like or astropy.units.Quantity
        Rest-frame wavelength; plain numbers are in micron.
    r_v : float
        R'_V (4.05 for Calzetti et al. 2000).
    extrapolate : bool
        Evaluate the formulae outside 0.12-2.2 micron instead of raising.

    Returns
    -------
    float or numpy.ndarray
        k(lambda); NaN where the wavelength is NaN.

    Raises
    ------
    ValueError
        For finite wavelengths outside 0.12-2.2 micron unless ``extrapolate``.

    Examples
    --------
    >>> from ismcgm.dust import calzetti_k
    >>> round(float(calzetti_k(0.4861)), 3), round(float(calzetti_k(0.6563)), 3)
    (4.598, 3.326)
    """
    x = _to_micron(wavelength, u.um)
    lo, hi = CALZETTI_RANGE_UM
    outside = np.isfinite(x) & ((x < lo) | (x > hi))
    if np.any(outside) and not extrapolate:
        bad = x[outside] if x.ndim else x
        raise ValueError(
            f"wavelength {np.ravel(bad)[0]:.4g} micron is outside the Calzetti curve ({lo}-{hi} micron)"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / x
        blue = 2.659 * (-2.156 + 1.509 * inv - 0.198 * inv**2 + 0.011 * inv**3) + r_v
        red = 2.659 * (-1.857 + 1.040 * inv) + r_v
    k = np.where(x < _BRANCH_UM, blue, red)
    return k.item() if k.ndim == 0 else k


def k_line(line):
    """k(lambda) at the rest wavelength of an instrument line (e.g. ``"HA"``)."""
    try:
        lam_A = instrument.LINE_WAVELENGTHS[line]
    except KeyError:
        raise ValueError(f"unknown line {line!r}: use {', '.join(instrument.LINE_WAVELENGTHS)}") from None
    return calzetti_k(lam_A * 1e-4)


def _ebv_of_decrement(decrement, intrinsic, r_v):
    """``2.5 / (k(Hb) - k(Ha)) * log10(decrement / intrinsic)`` (not clipped: negative below ``intrinsic``)."""
    k_ha = calzetti_k(instrument.LINE_WAVELENGTHS["HA"] * 1e-4, r_v)
    k_hb = calzetti_k(instrument.LINE_WAVELENGTHS["HB"] * 1e-4, r_v)
    return 2.5 / (k_hb - k_ha) * np.log10(decrement / intrinsic)


def ebv_from_balmer(ha, hb, intrinsic=INTRINSIC_HA_HB, r_v=R_V):
    """Nebular colour excess E(B-V)_gas from the Balmer decrement.

    Parameters
    ----------
    ha, hb : float or array_like
        Observed Ha and Hb fluxes (same unit), e.g. arrays over Monte Carlo
        realisations; they broadcast against each other.
    intrinsic : float
        Intrinsic Ha/Hb.
    r_v : float
        R'_V of the Calzetti curve.

    Returns
    -------
    float or numpy.ndarray
        ``2.5 / (k(Hb) - k(Ha)) * log10((ha/hb) / intrinsic)``; 0 where the
        observed ratio is below ``intrinsic`` (also for ``ha <= 0``); NaN
        where a flux is not finite or ``hb <= 0`` (no meaningful ratio).
    """
    ha = np.asarray(ha, dtype=float)
    hb = np.asarray(hb, dtype=float)
    valid = np.isfinite(ha) & np.isfinite(hb) & (hb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(valid, ha / np.where(valid, hb, 1.0), np.nan)
        ebv = _ebv_of_decrement(np.where(ratio > intrinsic, ratio, intrinsic), intrinsic, r_v)
    ebv = np.where(valid, ebv, np.nan)
    return ebv.item() if ebv.ndim == 0 else ebv


def ebv_realisations(ha, hb, intrinsic=INTRINSIC_HA_HB, r_v=R_V, measured=True):
    """E(B-V)_gas of every Monte Carlo realisation of one region.

    The rules (README, "Error model"):

    * ``measured`` False (Ha or Hb not detected in the region): the Balmer
      decrement does not constrain the dust; no correction (0 for every
      realisation).
    * Every realisation has its own E(B-V) from its Ha/Hb, below 0 where its
      decrement is below ``intrinsic`` (the noise about the region's value,
      kept so that the errors are symmetric about it).
    * The region's observed decrement -- the median Ha/Hb of its
      realisations -- below ``intrinsic``: no correction at the region's
      value, the paper's rule; the realisations keep their noise about it
      (their E(B-V) minus the median, so that the median is 0).  The rule
      is applied to the region, not to each realisation: clipping every
      realisation at E(B-V) = 0 would cut the lower half of the noise of a
      region near the intrinsic decrement and push its dust-corrected ratios
      (O32, O2) off the truth; and setting every realisation to 0 would drop
      the dust's uncertainty from the errors of exactly those regions (where
      the ratio's own noise is small, their pulls reached 7 sigma).
    * Hb <= 0 < Ha: the decrement exceeds any finite value; the realisation
      keeps that rank, at the top of the distribution, and is given the
      largest finite E(B-V) of the region's realisations (so that the
      corrected fluxes stay finite: percentiles, which only use ranks, are
      the same as with an infinite E(B-V) unless the top realisations reach
      the 84th percentile); likewise Ha <= 0 < Hb, at the bottom, the
      smallest.
    * Ha <= 0 and Hb <= 0: no ratio at all; the realisation gets the median
      E(B-V) of the others (it moves no percentile).
    * Non-finite fluxes (a failed fit) stay NaN.

    Parameters
    ----------
    ha, hb : array_like, shape (n_real,)
        Observed Ha and Hb fluxes of the realisations.
    intrinsic, r_v : float
        Intrinsic Ha/Hb and R'_V.
    measured : bool
        Whether both lines are detected in the region.

    Returns
    -------
    numpy.ndarray, shape (n_real,)
    """
    ha = np.asarray(ha, dtype=float)
    hb = np.asarray(hb, dtype=float)
    finite = np.isfinite(ha) & np.isfinite(hb)
    top = finite & (hb <= 0) & (ha > 0)
    bottom = finite & (ha <= 0) & (hb > 0)
    neither = finite & (hb <= 0) & (ha <= 0)
    ok = finite & (ha > 0) & (hb > 0)
    # the region's decrement: the median rank, Hb <= 0 < Ha above and Ha <= 0 < Hb below every ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, ha / np.where(ok, hb, 1.0), np.where(top, np.inf, np.where(bottom, 0.0, np.nan)))
    ranked = ratio[ok | top | bottom]
    if not measured or not ok.any():
        return np.where(finite, 0.0, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ebv = np.where(ok, _ebv_of_decrement(np.where(ok, ratio, 1.0), intrinsic, r_v), np.nan)
    ebv = np.where(top, np.max(ebv[ok]), np.where(bottom, np.min(ebv[ok]), ebv))
    ebv = np.where(neither, np.median(ebv[ok | top | bottom]), ebv)
    if not np.median(ranked) >= intrinsic:  # no correction at the region's value, its noise kept
        ebv = ebv - np.median(ebv[finite])
    return ebv


def ebv_stellar(ebv_gas, f=F_STELLAR_NEBULAR):
    """Stellar colour excess ``f * E(B-V)_gas`` (for the continuum only)."""
    return f * np.asarray(ebv_gas, dtype=float)


def correct(flux, wavelength_A, ebv, r_v=R_V):
    """Dust-corrected flux ``flux * 10**(0.4 * k(lambda) * ebv)``.

    Parameters
    ----------
    flux : float or array_like
        Observed flux (any unit; kept), e.g. over Monte Carlo realisations.
    wavelength_A : float, array_like or astropy.units.Quantity
        Rest-frame wavelength; plain numbers are in Angstrom.
    ebv : float or array_like
        Colour excess E(B-V) (e.g. from :func:`ebv_from_balmer` of the same
        realisations); broadcasts against ``flux``.
    r_v : float
        R'_V of the Calzetti curve.

    Returns
    -------
    float or numpy.ndarray
        NaN where ``ebv`` is NaN.
    """
    k = calzetti_k(_to_micron(wavelength_A, u.AA), r_v)
    out = np.asarray(flux, dtype=float) * 10.0 ** (0.4 * k * np.asarray(ebv, dtype=float))
    return out.item() if out.ndim == 0 else out
