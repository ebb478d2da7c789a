"""Image operations shared by the alignment and the masks: PSF matching and the image noise."""

from __future__ import annotations

import numpy as np

from .constants import SIGMA_PER_FWHM
from .io import Image
from .wcsutil import pixscale_arcsec

_STRUCT8 = np.ones((3, 3), dtype=bool)


def psf_match(image: Image, image_psf_fwhm: float, ifu_psf_fwhm: float) -> np.ndarray:
    """Convolve an image to the IFU resolution.

    Gaussian kernel of FWHM ``sqrt(ifu^2 - image^2)`` [arcsec]; when the
    image PSF is already as broad as the IFU's the image is returned
    unchanged.  NaN pixels are interpolated over by the convolution.
    """
    kfwhm2 = float(ifu_psf_fwhm) ** 2 - float(image_psf_fwhm) ** 2
    data = np.asarray(image.data, dtype=float)
    if kfwhm2 <= 0:
        return data.copy()
    sig_pix = np.sqrt(kfwhm2) * SIGMA_PER_FWHM / pixscale_arcsec(image.wcs)
    # astropy.convolution pulls in astropy.modeling (~0.5 s): imported where it is used, not when the
    # workflow's config and sample checks import this module
    from astropy.convolution import Gaussian2DKernel, convolve_fft

    kernel = Gaussian2DKernel(sig_pix)
    return convolve_fft(data, kernel, normalize_kernel=True, boundary="fill", fill_value=0.0,
                        nan_treatment="interpolate", preserve_nan=True, allow_huge=True)


def image_noise(data: np.ndarray, detect_nsigma: float = 2.5, dilate_pix: int = 5):
    """Background level and 1-sigma noise from source-free pixels.

    Two passes: sigma-clipped statistics of all pixels, then sources
    (connected pixels above ``detect_nsigma`` sigma, at least 5 pixels) are
    masked, dilated by ``dilate_pix`` pixels, and the statistics are
    recomputed on the rest.

    Returns
    -------
    median, std : float
    """
    # astropy.stats and scipy.ndimage (~0.6 s) are imported here, not when the Snakefile's input checks
    # import this module (a no-op rerun pays every import of the parse)
    from astropy.stats import sigma_clipped_stats
    from scipy import ndimage

    finite = np.isfinite(data)
    mask = ~finite
    med, std = 0.0, 0.0
    for _ in range(2):
        _, med, std = sigma_clipped_stats(data, mask=mask, sigma=3.0, maxiters=10)
        src = finite & (data > med + detect_nsigma * std)
        lab, n = ndimage.label(src, structure=_STRUCT8)
        if n:
            sizes = ndimage.sum(src, lab, index=np.arange(1, n + 1))
            src = np.isin(lab, 1 + np.flatnonzero(sizes >= 5))
        src = ndimage.binary_dilation(src, structure=_STRUCT8, iterations=dilate_pix)
        mask = ~finite | src
        if mask.all():
            break
    return float(med), float(std)
