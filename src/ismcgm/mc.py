"""Monte Carlo realisations of extracted spectra and their summary (SPEC section 4).

Every realisation ``i`` perturbs the data by Gaussian draws with sigma = ERR
and is then extracted and fitted exactly as the nominal data; the line flux
is the median over the realisations and its 1-sigma error their standard
deviation.

Seeding
-------
Each realisation draws from its own :class:`numpy.random.Generator`, keyed by
``(seed, component, region, grating, realisation)`` through
:class:`numpy.random.SeedSequence` (:func:`rng_for`).  The strings enter as
stable SHA-256 hashes (not Python's per-process ``hash``), so a realisation's
numbers are the same whatever the job batching, chunking or core count.
``component`` names the galaxy component (e.g. ``"G12"`` or ``"G12_a"`` for
a merger), ``region`` the mask (``"ism"``, ``"cgm"``).

Spectrum-level and cube-level draws
-----------------------------------
Extraction sums the spaxels of a mask, so the extracted spectrum of a
realisation is distributed exactly as the nominal spectrum plus
N(0, sqrt(sum ERR^2)) per channel.  :func:`spectrum_realisations` draws at
that level (fast); :func:`cube_realisations` perturbs every voxel of the cube
and calls the real extraction function (the literal procedure).  Both use the
same keys but different numbers of draws, so they agree in distribution, not
draw by draw; ``tests/test_mc.py`` checks that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .extract import flambda_factor, sum_region
from .seeding import key_hash, rng

__all__ = [
    "rng_for",
    "spectrum_realisations",
    "cube_realisations",
    "FluxSummary",
    "summarise",
]

#: Version of the seeding scheme; part of every key, so that a future change
#: of the scheme cannot silently reproduce old streams.
_SCHEME = 1


def rng_for(seed: int, component: str, region: str, grating: str, realisation: int) -> np.random.Generator:
    """Random generator of one Monte Carlo realisation.

    Parameters
    ----------
    seed : int
        Global (non-negative) seed of the workflow.
    component : str
        Galaxy component, e.g. ``"G12"`` or ``"G12_a"``.
    region : str
        Mask name, e.g. ``"ism"`` or ``"cgm"``.
    grating : str
        Grating name (case-insensitive), e.g. ``"g395m"``.
    realisation : int
        Index of the realisation (non-negative).

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator seeded by :class:`numpy.random.SeedSequence` from
        the seed, stable hashes of the strings and the realisation index.

    Examples
    --------
    >>> from ismcgm.mc import rng_for
    >>> a = rng_for(42, "G1", "ism", "g395m", 7).standard_normal()
    >>> b = rng_for(42, "G1", "ism", "G395M", 7).standard_normal()
    >>> a == b
    True
    """
    seed, realisation = _non_negative(seed, "seed"), _non_negative(realisation, "realisation")
    return rng(_SCHEME, seed, str(component), str(region).lower(), str(grating).lower(), realisation)


def _rngs_for(seed, component, region, grating, realisations):
    """``[rng_for(seed, component, region, grating, r) for r in realisations]``, the keys hashed once."""
    head = [_SCHEME, _non_negative(seed, "seed"), key_hash(str(component)), key_hash(str(region).lower()),
            key_hash(str(grating).lower())]
    return [np.random.Generator(np.random.PCG64(np.random.SeedSequence(head + [r])))
            for r in _realisation_list(realisations)]


def _non_negative(value, name):
    if isinstance(value, (bool, np.bool_)) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _realisation_list(realisations):
    out = [_non_negative(r, "realisation") for r in np.atleast_1d(realisations)]
    if not out:
        raise ValueError("realisations must not be empty")
    return out


def spectrum_realisations(flux, err, seed, component, region, grating, realisations):
    """Monte Carlo realisations of an extracted spectrum.

    Row ``i`` is ``flux + err * N(0, 1)`` with the standard normals drawn
    from :func:`rng_for` of ``realisations[i]``, so any chunking of the
    realisation indices gives the same rows.  Channels where ``flux`` or
    ``err`` is NaN stay NaN.

    Parameters
    ----------
    flux, err : array_like, shape (n_wave,)
        Nominal extracted spectrum and its 1-sigma error (any unit, the same
        for both).
    seed, component, region, grating
        Keys of :func:`rng_for`.
    realisations : sequence of int
        Realisation indices.

    Returns
    -------
    numpy.ndarray, shape (len(realisations), n_wave)
    """
    flux = np.asarray(flux, dtype=float)
    err = np.asarray(err, dtype=float)
    if flux.ndim != 1 or err.shape != flux.shape:
        raise ValueError(f"flux and err must be 1-D of equal length, got {flux.shape} and {err.shape}")
    rows = [flux + err * g.standard_normal(flux.size) for g in _rngs_for(seed, component, region, grating, realisations)]
    return np.asarray(rows)


def _bounding_box(mask):
    """Slices of the smallest box containing every True pixel of a 2-D mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (ny, nx), got shape {mask.shape}")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("mask is empty")
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def cube_realisations(sci, err, mask, extractor, seed, component, region, grating, realisations):
    """Monte Carlo realisations by perturbing the cube itself.

    For every realisation, each voxel of ``sci`` inside the bounding box of
    ``mask`` gets ``err * N(0, 1)`` added (standard normals from
    :func:`rng_for`, drawn in C order over the box), and ``extractor`` is
    called on the perturbed cube.  Voxels outside the box are left
    unperturbed, so ``extractor`` must only use spaxels of ``mask`` (as an
    extraction over that mask does).  Only one working copy of the cube is
    held, and only the box is redrawn per realisation.

    Parameters
    ----------
    sci, err : array_like, shape (n_wave, ny, nx)
        Data and 1-sigma error cubes.  NaN voxels stay NaN.
    mask : array_like of bool, shape (ny, nx)
        The extraction region.
    extractor : callable
        ``extractor(cube) -> spectrum`` of shape (n_spec,), e.g. the
        workflow's extraction function with the mask bound to it.
    seed, component, region, grating, realisations
        As for :func:`spectrum_realisations`.

    Returns
    -------
    numpy.ndarray, shape (len(realisations), n_spec)
    """
    sci = np.asarray(sci)
    err = np.asarray(err)
    if sci.ndim != 3 or err.shape != sci.shape:
        raise ValueError(f"sci and err must be 3-D cubes of equal shape, got {sci.shape} and {err.shape}")
    if np.shape(mask) != sci.shape[1:]:
        raise ValueError(f"mask shape {np.shape(mask)} does not match the cube's {sci.shape[1:]}")
    ys, xs = _bounding_box(mask)
    box_sci = np.asarray(sci[:, ys, xs], dtype=float)
    box_err = np.asarray(err[:, ys, xs], dtype=float)
    work = np.array(sci, dtype=float)  # the one working copy
    out = []
    for rng in _rngs_for(seed, component, region, grating, realisations):
        work[:, ys, xs] = box_sci + box_err * rng.standard_normal(box_sci.shape)
        out.append(np.asarray(extractor(work), dtype=float))
    return np.asarray(out)



def region_cube_draws(cube, carried: dict, regions, seed, grating, realisations) -> dict:
    """Literal cube-level draws of every region of one cube (``mc.level: cube``).

    Parameters
    ----------
    cube : ismcgm.io.Cube
    carried : dict
        ``{extension: bool mask on the cube grid}``
        (:func:`ismcgm.maskio.masks_on_cube`).
    regions : list of (component, region, extension)
    seed, grating, realisations
        As in :func:`cube_realisations`.

    Returns
    -------
    dict
        ``{(component, region): ndarray (len(realisations), n_wave)}``: the
        region's spectrum [erg/s/cm2/A] of every perturbed cube.
    """
    factor = flambda_factor(cube.wave_um, cube.pixar_sr)
    draws = {}
    for component, region, ext in regions:
        m = carried[ext]

        def extractor(sci, m=m):
            return sum_region(sci, m, factor)

        draws[(component, region)] = cube_realisations(cube.sci, cube.err, m, extractor, seed, component, region,
                                                      grating, realisations)
    return draws


@dataclass(frozen=True)
class FluxSummary:
    """Monte Carlo summary of a line flux (arrays for vectorised input).

    Attributes
    ----------
    flux : float or ndarray
        Median over the realisations.
    err : float or ndarray
        Standard deviation over the realisations (1 sigma, ``ddof=1``).
    snr : float or ndarray
        ``flux / err``.
    detected : bool or ndarray
        ``snr >= snr_threshold``.
    upper_limit : float or ndarray
        3-sigma upper limit where not detected (NaN where detected).
    n_valid : int or ndarray
        Number of finite realisations used.
    """

    flux: float
    err: float
    snr: float
    detected: bool
    upper_limit: float
    n_valid: int


def summarise(flux_realisations, snr_threshold=3.0, limit_realisations=None):
    """Median, error, S/N, detection and upper limit of Monte Carlo fluxes.

    A line is detected when ``median / std >= snr_threshold`` (SPEC
    section 5).  Otherwise the 3-sigma upper limit is 3 times the standard
    deviation of ``limit_realisations`` -- the flux summed over the three
    channels centred on the line (:func:`ismcgm.fit.three_channel_flux`) in
    each realisation -- or, if those are not given, of the fitted fluxes.
    Non-finite realisations (failed fits) are ignored.

    Parameters
    ----------
    flux_realisations : array_like, shape (n_real,) or (n_real, ...)
        Fitted fluxes; realisations along the first axis.
    snr_threshold : float
        Detection threshold (config ``detect_snr``).
    limit_realisations : array_like, shape (n_real,) or (n_real, ...), optional
        Three-channel fluxes of the same realisations.

    Returns
    -------
    FluxSummary
        Scalars for 1-D input, arrays of the trailing shape otherwise.
    """
    f = np.asarray(flux_realisations, dtype=float)
    if f.ndim == 0 or f.shape[0] == 0:
        raise ValueError("flux_realisations must have at least one realisation along axis 0")
    n_valid = np.sum(np.isfinite(f), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        median = _nan_stat(np.nanmedian, f)
        std = _nan_std(f)
        snr = median / std
    detected = np.asarray(snr >= snr_threshold)
    if limit_realisations is None:
        limit_std = std
    else:
        lim = np.asarray(limit_realisations, dtype=float)
        if lim.shape[0] != f.shape[0]:
            raise ValueError(
                f"limit_realisations has {lim.shape[0]} realisations, flux_realisations {f.shape[0]}"
            )
        limit_std = _nan_std(lim)
    upper = np.where(detected, np.nan, 3.0 * limit_std)
    return FluxSummary(
        flux=_scalar(median),
        err=_scalar(std),
        snr=_scalar(snr),
        detected=_scalar(detected),
        upper_limit=_scalar(upper),
        n_valid=_scalar(n_valid),
    )


def _nan_stat(func, a):
    """``func(a, axis=0)`` that returns NaN (silently) where all values are NaN."""
    out = np.full(a.shape[1:], np.nan)
    ok = np.any(np.isfinite(a), axis=0)
    if np.ndim(ok) == 0:
        return func(a[np.isfinite(a)]) if ok else np.nan
    out[ok] = func(a[:, ok], axis=0)
    return out


def _nan_std(a):
    """Standard deviation (ddof=1) over axis 0 ignoring NaN; NaN with < 2 values."""
    n = np.sum(np.isfinite(a), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(a, axis=0) / n
        var = np.nansum((a - mean) ** 2, axis=0) / (n - 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def _scalar(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x


# ---------------------------------------------------------------------------
# percentile summaries of skewed, heavy-tailed distributions (SPEC 6-7)
# ---------------------------------------------------------------------------
#: Percentiles of a Monte Carlo summary: lower 1-sigma, median, upper 1-sigma.
SUMMARY_PERCENTILES = (16.0, 50.0, 84.0)


def percentiles(values, q=SUMMARY_PERCENTILES, axis=-1):
    """Percentiles of Monte Carlo values that may hold +-inf, ignoring NaN.

    The usual linear interpolation between the two closest order statistics
    (``numpy.percentile``'s default) for finite neighbours; where a neighbour
    is infinite the result is that infinity (an infinite value is a rank, "more
    than any finite value", so a percentile that reaches it is infinite, and
    one that does not is unaffected).  NaN values are left out.

    Parameters
    ----------
    values : array_like
        Realisations along ``axis``.
    q : sequence of float
        Percentiles in [0, 100].
    axis : int
        Axis of the realisations.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(q),) + shape without axis``; NaN where no value is
        finite or infinite.
    """
    v = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
    n = np.sum(~np.isnan(v), axis=-1)
    v = np.sort(v, axis=-1)  # NaN sorts last
    q = np.asarray(q, dtype=float)
    out = np.full(q.shape + v.shape[:-1], np.nan)
    for i, qi in enumerate(q):
        pos = qi / 100.0 * np.maximum(n - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        frac = pos - lo
        a = np.take_along_axis(v, lo[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(v, hi[..., None], axis=-1)[..., 0]
        with np.errstate(invalid="ignore"):
            lin = a + (b - a) * frac
        res = np.where(frac == 0, a, lin)
        res = np.where(np.isinf(b) & (frac > 0), b, res)
        res = np.where(np.isinf(a), a, res)
        out[i] = np.where(n > 0, res, np.nan)
    return out


def half_width(values, axis=-1):
    """Robust 1-sigma: half the 16th-84th percentile range (:func:`percentiles`)."""
    p16, _, p84 = percentiles(values, SUMMARY_PERCENTILES, axis=axis)
    with np.errstate(invalid="ignore"):
        return 0.5 * (p84 - p16)
