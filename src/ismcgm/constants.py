"""Project-wide constants: the cosmology (SPEC section 0) and the Gaussian FWHM <-> sigma factor.

Physical constants that belong to one concern live with their owner and are
imported from there: the intrinsic Ha/Hb (``ismcgm.dust.INTRINSIC_HA_HB``),
the standard error of the median factor (``ismcgm.stats.SIGMA_MED_FACTOR``),
line wavelengths and the speed of light (``ismcgm.instrument``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import astropy.units as u

#: Parameters of the project's flat Lambda-CDM cosmology (SPEC section 0).
H0_KMS_MPC, OM0 = 70.0, 0.3


@lru_cache(maxsize=1)
def cosmology():
    """``astropy.cosmology.FlatLambdaCDM(H0=70, Om0=0.3)``, built on first use.

    ``astropy.cosmology`` takes about 0.5 s to import (it pulls in
    ``scipy.integrate`` and ``astropy.table``); the Monte Carlo and extraction
    jobs never need it, so it is imported here only when a distance is asked for.
    """
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=H0_KMS_MPC, Om0=OM0)


def proper_kpc_per_arcsec(z):
    """Proper kpc per arcsec at redshift ``z`` (scalar or array) in the project's cosmology."""
    if isinstance(z, (int, float)):  # scalars are cached: each distance is a numerical integral (~10 ms)
        return _proper_kpc_per_arcsec_scalar(float(z))
    return cosmology().kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60.0


@lru_cache(maxsize=256)
def _proper_kpc_per_arcsec_scalar(z: float):
    return cosmology().kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60.0


def __getattr__(name):
    if name == "COSMO":  # the cosmology object, for callers that want more than kpc_per_arcsec
        return cosmology()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: FWHM / sigma of a Gaussian, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: sigma / FWHM of a Gaussian.
SIGMA_PER_FWHM = 1.0 / FWHM_PER_SIGMA
