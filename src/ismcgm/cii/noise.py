"""Beam-correlated noise of ALMA cubes: channel rms, beam kernel, noise autocorrelation, analytic errors and the Monte Carlo noise spectra.

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
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.wcs import WCS

from ..constants import FWHM_PER_SIGMA
from ..io import InputError
from ..seeding import rng as seeded_rng
from ..wcsutil import sky_to_pixel
from .cube import AlmaCube


# ---------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------
def realisation_rng(seed: int, component: str, region: str, realisation: int) -> np.random.Generator:
    """Generator of one MC realisation, keyed by (seed, component, region, 'alma', realisation)."""
    return seeded_rng(seed, component, region, "alma", str(int(realisation)))


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
    a = sky_to_pixel(wcs, x0, y0)
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

    sx = scale * alma.bmaj / FWHM_PER_SIGMA / alma.pixscale
    sy = scale * alma.bmin / FWHM_PER_SIGMA / alma.pixscale
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


def _cutout(w: np.ndarray, pad: int):
    ys, xs = np.nonzero(w > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    wc = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad))
    wc[pad:-pad or None, pad:-pad or None] = w[y0:y1, x0:x1]
    return wc


def _noise_setup(alma: AlmaCube, rms, realisations, kernel_scale: float):
    """The realisation indices, the beam kernel and the per-channel scale [Jy] of white noise drawn on pixels."""
    idx = np.arange(realisations) if np.isscalar(realisations) else np.asarray(list(realisations), dtype=int)
    k = beam_kernel(alma, kernel_scale)
    scale = np.nan_to_num(np.asarray(rms, dtype=float) / np.sqrt(np.sum(k**2)) / alma.beam_area_pix)
    return idx, k, scale


def _beam_weights(wc: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Beam-correlated weights ``w (x) K``: ``scipy.signal.fftconvolve(wc, kernel[::-1, ::-1], mode="same")``.

    The same operations as ``fftconvolve`` (real FFTs of the next fast
    lengths of the full size through ``scipy.fft``, then the centred crop),
    so the same bits (``tests/test_cii.py`` compares them).  Done here
    because ``scipy.signal`` imports ``scipy.stats``, ~0.6 s at the start of
    every [C II] job for this one call (issue 17); the literal ``mode='cube'``
    draw still calls ``fftconvolve``.
    """
    from scipy import fft as sp_fft

    k = kernel[::-1, ::-1]
    full = [wc.shape[i] + k.shape[i] - 1 for i in (0, 1)]
    fshape = [sp_fft.next_fast_len(n, True) for n in full]
    ret = sp_fft.irfftn(sp_fft.rfftn(wc, fshape, axes=[0, 1]) * sp_fft.rfftn(k, fshape, axes=[0, 1]),
                        fshape, axes=[0, 1])[: full[0], : full[1]]
    y0, x0 = ((full[0] - wc.shape[0]) // 2, (full[1] - wc.shape[1]) // 2)
    return ret[y0 : y0 + wc.shape[0], x0 : x0 + wc.shape[1]].copy()


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
    idx, k, scale = _noise_setup(alma, rms, realisations, kernel_scale)
    pad = k.shape[0] // 2
    wc = _cutout(np.asarray(weights, dtype=float), pad)
    n_chan = alma.data.shape[0]
    out = np.empty((idx.size, n_chan))
    if mode == "fast":
        wk = _beam_weights(wc, k)
        for j, i in enumerate(idx):
            white = realisation_rng(seed, component, region, i).standard_normal((n_chan,) + wc.shape)
            out[j] = scale * np.tensordot(white, wk, axes=([1, 2], [0, 1]))
    elif mode == "cube":
        from scipy.signal import fftconvolve

        for j, i in enumerate(idx):
            white = realisation_rng(seed, component, region, i).standard_normal((n_chan,) + wc.shape)
            conv = fftconvolve(white, k[None], mode="same", axes=(1, 2))
            out[j] = scale * np.tensordot(conv, wc, axes=([1, 2], [0, 1]))
    else:
        raise ValueError(f"unknown MC mode {mode!r}: use 'fast' or 'cube'")
    return out


def joint_noise_spectra(alma: AlmaCube, weights: dict, rms, seed: int, key: str, realisations,
                        kernel_scale: float = 1.0) -> dict:
    """Beam-correlated noise spectra [Jy] of several regions drawn from *one* noise field per realisation.

    :func:`noise_spectra` draws every region from its own white-noise cutout,
    so two regions are independent; that is right for regions far apart but
    not for adjacent ones (annuli one beam wide), whose real noise is
    correlated through the beam: an estimate that differences them (the
    spill correction) would get too large an error.  Here realisation ``i``
    is one white-noise cube over the union of the regions' cutouts (padded by
    the kernel half-size), keyed by ``(seed, key, 'joint', 'alma', i)``, and
    every region extracts its noise from it (the ``fast`` identity of
    :func:`noise_spectra`: the same numbers against the beam-correlated
    weights of each region).

    Returns
    -------
    dict
        ``{name: ndarray (n_real, n_chan)}`` for every entry of ``weights``.
    """
    idx, k, scale = _noise_setup(alma, rms, realisations, kernel_scale)
    pad = k.shape[0] // 2
    names = list(weights)
    arrays = [np.asarray(weights[n], dtype=float) for n in names]
    ys, xs = np.nonzero(np.any([w > 0 for w in arrays], axis=0))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    shape = (y1 - y0 + 2 * pad, x1 - x0 + 2 * pad)
    wks = []
    for w in arrays:
        wc = np.zeros(shape)
        wc[pad:pad + y1 - y0, pad:pad + x1 - x0] = w[y0:y1, x0:x1]
        wks.append(_beam_weights(wc, k).ravel())
    wk = np.stack(wks, axis=1)  # (box pixels, regions)
    n_chan = alma.data.shape[0]
    out = np.empty((len(names), idx.size, n_chan))
    for j, i in enumerate(idx):
        white = realisation_rng(seed, key, "joint", i).standard_normal((n_chan, shape[0] * shape[1]))
        # einsum's own loops, not BLAS: a multithreaded BLAS sums in an order that depends on its thread
        # count, and the results must not depend on the environment (bit-identical whatever the machine runs)
        out[:, j, :] = (scale[:, None] * np.einsum("cp,pr->cr", white, wk)).T
    return {n: out[r] for r, n in enumerate(names)}
