"""Project-wide constants: the cosmology (SPEC section 0) and the Gaussian FWHM <-> sigma factor.

Physical constants that belong to one concern live with their owner and are
imported from there: the intrinsic Ha/Hb (``ismcgm.dust.INTRINSIC_HA_HB``),
the standard error of the median factor (``ismcgm.stats.SIGMA_MED_FACTOR``),
line wavelengths and the speed of light (``ismcgm.instrument``).
"""

from __future__ import annotations

import math

from astropy.cosmology import FlatLambdaCDM

#: Cosmology of the project (SPEC section 0).
COSMO = FlatLambdaCDM(H0=70.0, Om0=0.3)

#: FWHM / sigma of a Gaussian, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: sigma / FWHM of a Gaussian.
SIGMA_PER_FWHM = 1.0 / FWHM_PER_SIGMA
