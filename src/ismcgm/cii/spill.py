"""The beam spill between regions: the transfer matrix of the beam at the IFU resolution and its inverse ([C II] at the IFU resolution).

Beam spill: [C II] at the IFU resolution
----------------------------------------
[C II] is measured at the ALMA beam (~0.3-0.4"), Ha at the IFU PSF
(~0.2"): through the same masks the beam moves ISM [C II] into the CGM
mask (and CGM [C II] out of it) while Ha stays sharp, so even lines
distributed alike would give a [C II]/Ha higher in the CGM than in the ISM
(measured on the mock: README, "Measured on the mock").  Degrading Ha to
the beam would remove that bias but dilute a real ISM/CGM difference.  Instead the spill is undone with
a transfer matrix, the "geometric transfer matrix" of partial-volume
correction (:mod:`ismcgm.transfer`, shared with the ISM/halo decomposition
:mod:`ismcgm.decompose`): each region's [C II] is taken to follow the Ha morphology
*inside* that region, with its own [C II]/Ha; ``T[m, r]`` is the fraction
of region ``r``'s emission that the beam puts into mask ``m``
(:func:`transfer_matrix`: the continuum-subtracted Ha map of the IFU cube,
:func:`ismcgm.linemap.line_map`, restricted to ``r``, convolved with the
Gaussian kernel of covariance ``C_beam - C_psf`` -- :func:`matching_kernel`,
sky covariances turned into pixels through the WCS, so a rotated IFU grid
is handled -- and summed over ``m``).  The measured fluxes are ``C = T
C_native``, so ``C_native = T^-1 C`` (:func:`spill_corrected`), with errors
propagated to first order.
``CII_HA`` uses ``C_native``; the measured [C II] fluxes are kept as they
are (``cii_flux``), the native ones are ``cii_flux_native``.  The
validation's ``true_shift`` goes through the same correction with the
truth Ha map.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.wcs import WCS

from ..constants import FWHM_PER_SIGMA
from ..io import InputError
from ..linemap import line_map, line_map_realisations
from ..maskio import masks_on_cube, read_masks
from ..mc import half_width
from ..seeding import rng as seeded_rng
from ..transfer import solvable, solve_operator
from ..transfer import transfer_matrix as geometric_transfer_matrix
from ..wcsutil import sky_to_pixel
from .cube import jykms_to_cgs
from .weights import region_names


def matching_kernel(beam, psf_fwhm: float, wcs: WCS, galaxy=None) -> np.ndarray:
    """Kernel taking a circular Gaussian PSF to an elliptical Gaussian beam, on a pixel grid.

    Parameters
    ----------
    beam : (float, float, float)
        Target beam: BMAJ, BMIN [arcsec] and BPA [deg east of north].
    psf_fwhm : float
        FWHM [arcsec] of the (circular Gaussian) PSF of the map to smooth.
    wcs : astropy.wcs.WCS
        Celestial WCS of the map (any pixel scale and rotation).

    Returns
    -------
    ndarray
        Normalised (sum 1) kernel, odd size, covering +-4 sigma of its major axis.

    Notes
    -----
    The kernel covariance is ``C_beam - (psf_fwhm / 2.355)^2 I`` in sky
    coordinates, turned into pixels through the local WCS Jacobian.  Where
    the beam is *narrower* than the PSF along an axis the difference is
    negative; it is set to zero there (no smoothing along that axis; the
    beam cannot be matched exactly) with a warning.
    """
    from astropy.convolution import Model2DKernel
    from astropy.modeling.models import Gaussian2D

    bmaj, bmin, bpa = (float(b) for b in beam)
    pa = np.deg2rad(bpa)
    major = np.array([np.sin(pa), np.cos(pa)])  # (east, north)
    minor = np.array([np.cos(pa), -np.sin(pa)])
    cov_sky = ((bmaj / FWHM_PER_SIGMA) ** 2 * np.outer(major, major) + (bmin / FWHM_PER_SIGMA) ** 2 * np.outer(minor, minor)
               - (psf_fwhm / FWHM_PER_SIGMA) ** 2 * np.eye(2))
    ny, nx = wcs.array_shape if wcs.array_shape else (1, 1)
    a = sky_to_pixel(wcs.celestial, (nx - 1) / 2.0, (ny - 1) / 2.0)
    vals, vecs = np.linalg.eigh(a @ cov_sky @ a.T)
    if vals.min() < 0:
        warnings.warn(f"{galaxy or ''}: the ALMA beam {bmaj:.3g}x{bmin:.3g}\" is narrower than the IFU PSF "
                      f"({psf_fwhm:.3g}\") along one axis; Ha is not smoothed along it", RuntimeWarning)
    vals = np.maximum(vals, 1e-4)  # (0.01 pix)^2: a delta function along that axis
    cov_pix = vecs @ np.diag(vals) @ vecs.T
    half = int(np.ceil(4.0 * np.sqrt(vals.max())))
    model = Gaussian2D(1.0, 0.0, 0.0, cov_matrix=cov_pix)
    k = Model2DKernel(model, x_size=2 * half + 1, y_size=2 * half + 1, mode="center").array
    return k / k.sum()


def transfer_matrix(ha_map, masks: dict, wcs: WCS, beam, psf_fwhm: float, galaxy=None):
    """Beam spill between regions: ``T[m, r]`` = fraction of region ``r``'s flux seen in mask ``m`` by ALMA.

    Region ``r``'s emission is modelled with the morphology of Ha inside it
    (``ha_map`` restricted to mask ``r``); convolved with the kernel from the
    IFU PSF to the ALMA beam (:func:`matching_kernel`) and summed over mask
    ``m``, divided by its own total.  The columns need not sum to 1 (light
    spills outside every mask).

    Parameters
    ----------
    ha_map : ndarray (ny, nx)
        Ha line flux per spaxel (noisy or noiseless; NaN taken as 0).
    masks : dict
        ``{name: bool array}`` on the grid of ``ha_map``.
    wcs : astropy.wcs.WCS
        Celestial WCS of that grid.
    beam, psf_fwhm
        See :func:`matching_kernel`.

    Returns
    -------
    names : list of str
    T : ndarray (n, n)
        NaN columns for regions whose Ha sum is not positive.
    """
    from astropy.convolution import convolve_fft

    ha = np.nan_to_num(np.asarray(ha_map, float), nan=0.0)
    w = wcs.celestial.deepcopy()
    w.array_shape = ha.shape
    kern = matching_kernel(beam, psf_fwhm, w, galaxy)
    names = list(masks)
    totals = [float(ha[masks[r]].sum()) for r in names]
    terms = [convolve_fft(np.where(masks[r], ha, 0.0), kern, boundary="fill", fill_value=0.0, normalize_kernel=True)
             if tot > 0 else None for r, tot in zip(names, totals)]
    t = geometric_transfer_matrix(terms, masks, totals)
    return names, t


def _masks_on_ha_grid(cube, masks):
    """The masks (a file of :func:`ismcgm.maskio.write_masks`, or what :func:`ismcgm.maskio.read_masks`
    returned for it) carried onto the cube's grid, shifted by the alignment recorded in the mask file
    (``SHIFTRA``, ``SHIFTDEC``), as the extraction does: ``carried, wcs``."""
    mask_dict, mask_wcs, headers = masks if isinstance(masks, tuple) else read_masks(masks)
    return masks_on_cube(mask_dict, mask_wcs, cube.wcs, cube.sci.shape[1:], alignment=headers["PRIMARY"])


def _ha_map(cube, z: float, galaxy):
    try:
        return line_map(cube, z, "HA")
    except InputError as exc:
        raise InputError(galaxy, cube.path, f"cannot make the Ha map for [C II]/Ha: {exc.problem}",
                         "give a cube covering Ha at the galaxy redshift") from None


def transfer_matrix_from_cube(cube, masks, z: float, psf_fwhm: float, beam, galaxy=None):
    """:func:`transfer_matrix` with the Ha map of an IFU cube (:func:`ismcgm.linemap.line_map`), the masks
    carried onto the cube's grid (see :func:`transfer_matrix_realisations`)."""
    carried, wcs = _masks_on_ha_grid(cube, masks)
    return transfer_matrix(_ha_map(cube, z, galaxy), carried, wcs, beam, psf_fwhm, galaxy)


def transfer_matrices(ha_maps, masks: dict, wcs: WCS, beam, psf_fwhm: float, galaxy=None) -> np.ndarray:
    """:func:`transfer_matrix` of many Ha maps at once (e.g. Monte Carlo realisations), shape (n_maps, n, n).

    The smoothing is linear and its kernel point-symmetric, so ``T[m, r] =
    sum_q ha(q) 1_r(q) A_m(q) / sum_q ha(q) 1_r(q)`` with ``A_m`` the mask
    ``m`` smoothed by the same kernel (the adjoint): one convolution per mask
    instead of one per region and map.  Equal to :func:`transfer_matrix` to
    rounding (``tests/test_cii.py``).  A region whose Ha sums to <= 0 in a
    map gets a NaN column in that map.
    """
    from astropy.convolution import convolve_fft

    ha = np.nan_to_num(np.asarray(ha_maps, float), nan=0.0)
    w = wcs.celestial.deepcopy()
    w.array_shape = ha.shape[1:]
    kern = matching_kernel(beam, psf_fwhm, w, galaxy)
    names = list(masks)
    inside = np.stack([np.asarray(masks[r], float) for r in names])  # (n, ny, nx)
    seen = np.stack([convolve_fft(inside[k], kern, boundary="fill", fill_value=0.0, normalize_kernel=True)
                     for k in range(len(names))])
    # einsum's own loops (optimize=False), not BLAS, whose summation order depends on its thread count
    totals = np.einsum("iyx,ryx->ir", ha, inside)
    num = np.einsum("iyx,ryx,myx->imr", ha, inside, seen)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / totals[:, None, :]
    return np.where((totals > 0)[:, None, :], t, np.nan)


def transfer_matrix_realisations(cube, masks, z: float, psf_fwhm: float, beam, seed: int, galaxy: str,
                                 realisations) -> tuple[list, np.ndarray, np.ndarray]:
    """The spill matrix of the cube's Ha map and those of its Monte Carlo realisations.

    The masks are carried onto the cube's grid once (as the extraction does); the nominal matrix is
    :func:`transfer_matrix_from_cube`'s; realisation ``i`` uses the Ha map of the cube redrawn within ERR
    (:func:`ismcgm.linemap.line_map_realisations`, stream ``(seed, galaxy, 'ha_map', 'spill', i)``), so
    that the noise of the Ha morphology enters the errors of the spill-corrected [C II].

    Returns
    -------
    names : list of str
    t : ndarray (n, n)
    t_realisations : ndarray (n_real, n, n)
    """
    carried, wcs = _masks_on_ha_grid(cube, masks)
    names, t = transfer_matrix(_ha_map(cube, z, galaxy), carried, wcs, beam, psf_fwhm, galaxy)
    maps = line_map_realisations(cube, z, "HA", lambda i: seeded_rng(seed, galaxy, "ha_map", "spill", i),
                                 realisations)
    return names, t, transfer_matrices(maps, carried, wcs, beam, psf_fwhm, galaxy)


def _table_order(table, names, galaxy: str) -> list[int]:
    """Indices into ``names`` of the rows of ``table``."""
    # regions named as the mask extensions (ISM, CGM, ANN03 for an annulus: region ann03 of the profiles)
    index = {(c, r.upper()): k for k, (c, r) in enumerate(region_names(galaxy, n) for n in names)}
    return [index[(c, r.upper())] for c, r in zip(table["component"], table["region"])]


def _spill_inverse(table, names, t, galaxy: str):
    """``T^-1`` in the row order of ``table`` and the diagonal of ``T``; None where not invertible."""
    order = _table_order(table, names, galaxy)
    tt = t[np.ix_(order, order)]
    if solvable(tt):
        return solve_operator(tt), np.diag(tt)
    warnings.warn(f"{galaxy}: beam-spill matrix not invertible (a region without Ha); [C II] left as measured",
                  RuntimeWarning)
    return None, np.ones(len(table))


def spill_corrected(table, names, t, galaxy: str, realisations=None):
    """[C II] of every region at the IFU resolution: ``C_native = T^-1 C_measured``.

    Parameters
    ----------
    table : DataFrame
        :func:`measure_galaxy` rows (``component, region, flux, flux_err,
        upper_limit`` [erg/s/cm2]).
    names, t
        :func:`transfer_matrix` of the same masks.
    galaxy : str
    realisations : DataFrame, optional
        :func:`realisation_table` of the same regions: then ``flux_native_err``
        is half the 16-84 % range of their native fluxes (for draws that
        carry the regions' noise correlation and the spill matrix's own noise).

    Returns
    -------
    DataFrame
        ``table`` with ``flux_native``, ``flux_native_err`` (first-order,
        the regions' errors taken as independent, or from ``realisations``) and ``upper_limit_native``
        (``upper_limit / T[r, r]``, conservative: the spill from other regions
        is not subtracted).  Where ``T`` cannot be inverted (a region without
        positive Ha) the native columns equal the measured ones, with a
        warning.
    """
    df = table.copy()
    inv, diag = _spill_inverse(df, names, t, galaxy)
    flux, err = df["flux"].to_numpy(float), df["flux_err"].to_numpy(float)
    if inv is not None:
        native, native_err = inv @ flux, np.sqrt((inv**2) @ err**2)
    else:
        native, native_err = flux, err
    if realisations is not None and inv is not None:
        width = realisations.groupby(["component", "region"], sort=False)["flux_native"].apply(
            lambda v: float(half_width(v.to_numpy(float))))
        native_err = np.array([width.get((c, r), np.nan) for c, r in zip(df["component"], df["region"])])
    df["flux_native"], df["flux_native_err"] = native, native_err
    df["upper_limit_native"] = df["upper_limit"].to_numpy(float) / diag
    return df


#: Columns of :func:`realisation_table` (``results/cii/<variant>/<id>_realisations.parquet``).
REALISATION_COLUMNS = ("id", "component", "region", "realisation", "flux", "flux_native")


def realisation_table(table, spectra: dict, names, t, galaxy: str, t_realisations=None):
    """[C II] flux of every Monte Carlo realisation, measured and at the IFU resolution.

    The spill correction is linear, so it is applied realisation by
    realisation: ``C_native[:, i] = T^-1 C_measured[:, i]`` over the regions
    of realisation ``i`` (the measured fluxes where ``T`` is not invertible,
    as :func:`spill_corrected`).  A failed fit (NaN) in one region makes that
    realisation's native fluxes NaN in every region it spills into.

    Parameters
    ----------
    table, spectra
        The two outputs of :func:`measure_galaxy`.
    names, t
        :func:`transfer_matrix` of the same masks.
    galaxy : str
    t_realisations : ndarray (n_real, n, n), optional
        One spill matrix per realisation (:func:`transfer_matrix_realisations`, in the order of ``names``):
        realisation ``i`` is corrected with its own; where it cannot be inverted its native fluxes are NaN.
        Default: ``t`` for all.

    Returns
    -------
    pandas.DataFrame
        :data:`REALISATION_COLUMNS`, fluxes in erg/s/cm2.
    """
    import pandas as pd

    keys = list(zip(table["component"], table["region"]))
    fluxes = np.array([jykms_to_cgs(spectra[k][2].fluxes, spectra[k][0].nu_line_hz) for k in keys], dtype=float)
    fluxes = fluxes.reshape(len(keys), -1)
    n = fluxes.shape[1]
    if t_realisations is None:
        inv, _ = _spill_inverse(table, names, t, galaxy)
        native = inv @ fluxes if inv is not None else fluxes
    else:
        order = _table_order(table, names, galaxy)
        native = np.full_like(fluxes, np.nan)
        for i in range(n):
            ti = np.asarray(t_realisations[i])[np.ix_(order, order)]
            if solvable(ti):
                native[:, i] = solve_operator(ti) @ fluxes[:, i]
    return pd.DataFrame({
        "id": galaxy,
        "component": np.repeat([k[0] for k in keys], n),
        "region": np.repeat([k[1] for k in keys], n),
        "realisation": np.tile(np.arange(n), len(keys)),
        "flux": fluxes.ravel(),
        "flux_native": native.ravel(),
    }, columns=list(REALISATION_COLUMNS))


def native_resolution(rows):
    """[C II] rows (``line_fluxes`` format) with the spill-corrected fluxes in place of the measured ones.

    What the ratio stage uses for ``CII_HA`` (:func:`spill_corrected`); rows
    without the native columns are returned unchanged.  The measured [C II]
    fluxes (``results/cii/``, ``cii_flux`` of ``cii.csv``) are never changed.
    """
    df = rows.copy()
    if "flux_native" not in df.columns:
        return df
    native = df["flux_native"].to_numpy(float)
    ok = np.isfinite(native)
    for col, src in (("flux", "flux_native"), ("flux_dustcorr", "flux_native"), ("flux_err", "flux_native_err"),
                     ("flux_dustcorr_err", "flux_native_err"), ("upper_limit", "upper_limit_native")):
        if col in df.columns and src in df.columns:
            df[col] = np.where(ok, df[src].to_numpy(float), df[col].to_numpy(float))
    return df
