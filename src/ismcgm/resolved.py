"""Spatially resolved line ratios: radial profiles from the ISM out into the CGM (issue 18).

Annuli
------
Every galaxy component gets *circular* annuli in projected physical radius
(proper kpc, the workflow's cosmology :data:`ismcgm.constants.COSMO`) about its
sky position -- ``ra, dec`` of the sample row, or the two ``components``
positions of a merger -- with the config's edges (default 0-1-2-3-4.5-6-8-10
kpc).  Circular, not elliptical: the ISM masks of z = 4-6 galaxies are a few
spaxels across, so moments of the mask would mostly measure the spaxel grid
and the PSF, and the paper's CGM (a top-hat expansion) is itself circular
about the ISM.  A spaxel belongs to the annulus ``r_in <= r < r_out`` that
contains its *centre* (on the aligned grid of the reference grating, where
the masks live); spaxels that are NaN in the reference cube or inside the
galaxy's ``exclude_region`` are left out, and an annulus of a merger
component keeps only the spaxels on its own side of the split line
(:func:`ismcgm.masks.make_masks`), so no annulus crosses it.  The annuli are
*not* cut to the ISM/CGM masks: they reach 10 kpc also where the CGM mask
stops earlier (the point of a profile); an annulus partly outside the
field of view keeps the spaxels inside it, and an empty annulus is dropped.

Measurement
-----------
Each annulus is a region like ISM and CGM: its spaxels are stacked
(:func:`ismcgm.extract.region_spectra`, the masks carried onto the other
grating's grid as the extraction does), fitted with the same tied-kinematics
model and the same keyed Monte Carlo (:func:`ismcgm.linefluxes.fit_chunk`,
region keys ``ann00``, ``ann01``, ...; distinct from ``ISM``/``CGM``, so the
draws are independent of the two-region ones), dust-corrected per
realisation (:func:`ismcgm.linefluxes.gather`) and turned into ratios per
realisation (:func:`ismcgm.ratios.compute_ratios` with
:func:`ismcgm.ratios.realisation_fluxes`): ``log_value`` is the median of
log10(ratio) over the realisations, ``log_p16/log_p84`` its percentiles,
with the limits of SPEC 7.

Sample median profile
---------------------
Per ratio and annulus (edges), the median over the components with a value
(``limit == 'none'``).  Errors: 16th/84th percentiles of
:data:`N_BOOTSTRAP` bootstrap medians, each resampling the components with
replacement *and* redrawing every resampled point within its own errors
(a split normal with the point's ``log_p16``/``log_p84``), so both the
galaxy-to-galaxy scatter and the measurement errors enter.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from . import cii, extract, masks
from .constants import proper_kpc_per_arcsec
from .dust import k_line
from .instrument import TIED_RATIOS
from .linefluxes import fit_chunk, gather
from .mc import percentiles
from .ratios import (
    RATIO_DEFINITIONS,
    RATIOS,
    compute_ratios,
    preferred_grating,
    realisation_fluxes,
)
from .samples import parse_components
from .validation import true_fluxes_as_measured

#: Default annulus edges [kpc] (config ``resolved.radial_edges_kpc``).
DEFAULT_EDGES_KPC = (0.0, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0, 10.0)

#: Ratios of the IFU profiles; [C II]/Hα is added where the galaxy has an ALMA cube (:func:`profile_ratios`).
PROFILE_RATIOS = tuple(r for r in RATIOS if r != "CII_HA")

#: Columns of ``results/tables/<variant>/radial_profiles.csv`` (issue contract).
PROFILE_COLUMNS = ["id", "component", "r_in_kpc", "r_out_kpc", "r_mid_kpc", "ratio", "log_value", "log_p16",
                   "log_p84", "limit"]

#: Columns of the per-annulus geometry table.
ANNULUS_COLUMNS = ["id", "component", "region", "extension", "r_in_kpc", "r_out_kpc", "r_mid_kpc", "n_spaxels",
                   "frac_ism", "frac_cgm", "r_ism_kpc", "r_cgm_kpc"]

#: Bootstrap draws of the sample median profile.
N_BOOTSTRAP = 1000

TABLE_COMMENT = (
    "Radial line-ratio profiles (issue 18): circular annuli in projected proper radius about each component,\n"
    "spaxels stacked and fitted with the keyed Monte Carlo, ratios formed per realisation (SPEC 7):\n"
    "log_value = median log10(ratio), log_p16/log_p84 its percentiles; r_mid_kpc = (r_in + r_out)/2;\n"
    "limit: none | upper | lower | undefined."
)


def region_key(i: int) -> str:
    """Region name (and Monte Carlo key) of annulus ``i``: ``ann00``, ``ann01``, ..."""
    return f"ann{i:02d}"


def component_positions(row) -> list[tuple[str, str, tuple[float, float]]]:
    """``(component, mask suffix, (ra, dec))`` of each component of a galaxy.

    ``[(id, '', (ra, dec))]``, or ``[(id_a, '_A', pos_a), (id_b, '_B', pos_b)]``
    for a merger (the mask names of :func:`ismcgm.masks.make_masks`).
    """
    gid = row["id"]
    if bool(row["merger"]):
        a, b = parse_components(row["components"])
        return [(f"{gid}_a", "_A", a), (f"{gid}_b", "_B", b)]
    return [(gid, "", (float(row["ra"]), float(row["dec"])))]


def kpc_per_arcsec(z: float) -> float:
    """Proper kpc per arcsec at redshift ``z`` (the workflow's cosmology)."""
    return float(proper_kpc_per_arcsec(z))


def radius_map_kpc(wcs, shape, position, kpc_per_arcsec: float) -> np.ndarray:
    """Projected proper distance [kpc] of every spaxel centre from a sky position (``kpc_per_arcsec``:
    the scale at the galaxy's redshift, e.g. :func:`ismcgm.maskio.kpc_per_arcsec` of its mask file)."""
    yy, xx = np.indices(shape)
    ra, dec = wcs.celestial.pixel_to_world_values(xx, yy)
    ra0, dec0 = position
    dra = ((np.asarray(ra) - ra0 + 180.0) % 360.0 - 180.0) * np.cos(np.deg2rad(dec0))
    ddec = np.asarray(dec) - dec0
    return np.hypot(dra, ddec) * 3600.0 * kpc_per_arcsec


def annulus_masks(row, wcs, shape, edges_kpc=DEFAULT_EDGES_KPC, valid=None, kpc_per_arcsec: float | None = None):
    """Circular annuli about every component (see module docstring).

    Parameters
    ----------
    row : mapping
        Sample row (``id, z, ra, dec, merger, components``).
    wcs : astropy.wcs.WCS
        Aligned celestial WCS of the mask grid.
    shape : (int, int)
    edges_kpc : sequence of float
        Increasing annulus edges [kpc].
    valid : ndarray of bool, optional
        Spaxels that may be used (valid and not excluded).
    kpc_per_arcsec : float, optional
        Proper kpc per arcsec at the galaxy's redshift (the mask file's
        ``KPCAS``, :func:`ismcgm.maskio.kpc_per_arcsec`); default: computed
        from ``row["z"]``.

    Returns
    -------
    annuli : dict
        ``{extension: bool array}``, extensions ``ANN00`` (``ANN00_A``, ...).
    regions : list of (component, region, extension, r_in, r_out)
        The non-empty annuli.
    """
    edges = np.asarray(edges_kpc, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise ValueError(f"annulus edges must increase from >= 0 kpc, got {list(edges_kpc)}")
    scale = float(proper_kpc_per_arcsec(float(row["z"]))) if kpc_per_arcsec is None else float(kpc_per_arcsec)
    ok = np.ones(shape, bool) if valid is None else np.asarray(valid, bool)
    comps = component_positions(row)
    side_a = masks._bisector_side_a(wcs.celestial, shape, comps[0][2], comps[1][2]) if len(comps) == 2 else None
    annuli, regions = {}, []
    for k, (component, suffix, pos) in enumerate(comps):
        r = radius_map_kpc(wcs, shape, pos, scale)
        use = ok if side_a is None else ok & (side_a if k == 0 else ~side_a)
        for i, (r_in, r_out) in enumerate(zip(edges[:-1], edges[1:])):
            m = use & (r >= r_in) & (r < r_out)
            if not m.any():
                continue
            ext = f"ANN{i:02d}{suffix}"
            annuli[ext] = m
            regions.append((component, region_key(i), ext, float(r_in), float(r_out)))
    return annuli, regions


def annulus_table(gid, regions, annuli, region_masks, headers) -> pd.DataFrame:
    """Geometry of the annuli: spaxels, fractions in the ISM/CGM masks, the masks' radii.

    ``region_masks``/``headers`` are :func:`ismcgm.masks.read_masks` of the
    galaxy's two-region masks (same grid as the annuli).
    """
    rows = []
    for component, region, ext, r_in, r_out in regions:
        suffix = ext[5:]  # '' or '_A'
        m = annuli[ext]
        n = int(m.sum())
        ism, cgm = region_masks.get(f"ISM{suffix}"), region_masks.get(f"CGM{suffix}")
        rows.append({
            "id": gid, "component": component, "region": region, "extension": ext, "r_in_kpc": r_in, "r_out_kpc": r_out,
            "r_mid_kpc": 0.5 * (r_in + r_out), "n_spaxels": n,
            "frac_ism": float((m & ism).sum() / n) if ism is not None else np.nan,
            "frac_cgm": float((m & cgm).sum() / n) if cgm is not None else np.nan,
            "r_ism_kpc": float(headers.get(f"ISM{suffix}", {}).get("RKPC", np.nan)),
            "r_cgm_kpc": float(headers.get(f"CGM{suffix}", {}).get("RCGMKPC", np.nan)),
        })
    return pd.DataFrame(rows, columns=ANNULUS_COLUMNS)


def stacked_spectra(cubes: dict, aligned_wcs: dict, annuli: dict, annuli_wcs, regions) -> dict:
    """``{grating: [(component, region, wave, flux, err), ...]}`` of the annuli with spaxels on that grid."""
    out = {}
    for grating, cube in cubes.items():
        spectra = extract.region_spectra(cube, annuli, annuli_wcs, aligned_wcs[grating])
        out[grating] = [(c, r, *spectra[ext][:3]) for c, r, ext, *_ in regions
                        if spectra[ext][3] > 0 and np.isfinite(spectra[ext][1]).any()]
    return out


def fit_annuli(gid, z, spectra: dict, seed: int, n_mc: int, fit_cfg: dict) -> pd.DataFrame:
    """Keyed Monte Carlo fits of the stacked annuli (or bins): the chunk table of
    :func:`ismcgm.linefluxes.fit_chunk` for every grating, all realisations."""
    chunks = [fit_chunk(gid, specs, z, grating, list(range(n_mc)), seed, fit_cfg)
              for grating, specs in spectra.items() if specs]
    return pd.concat(chunks, ignore_index=True)


def _annulus_region(region: str) -> str:
    """``ANN03`` (the [C II] code's name, from the mask extension) -> ``ann03`` (:func:`region_key`)."""
    return region.lower() if region.upper().startswith("ANN") else region


def annulus_cii(alma, annuli: dict, annuli_wcs, mask_headers, ha_cube, row, seed: int, n_mc: int, n_gauss: int,
                detect_snr: float):
    """[C II] of every annulus on the ALMA grid, at the IFU resolution (the beam spill undone).

    The two-region [C II] path applied to the annuli: the annuli are
    reprojected onto the ALMA grid (fractional coverage), [C II] is fitted
    with its beam-correlated Monte Carlo (:func:`ismcgm.cii.measure_galaxy`;
    region keys ``ANN00``, ..., so its draws are independent of the ISM/CGM
    ones; all annuli of a realisation drawn from one noise field,
    :func:`ismcgm.cii.joint_noise_spectra`, so adjacent annuli share the
    beam's noise correlation), and the spill of the beam between the annuli
    is undone with the transfer matrix of the Hα map of ``ha_cube``
    (:func:`ismcgm.cii.transfer_matrix_from_cube`), realisation by
    realisation, each realisation with the matrix of its own redrawn Hα map
    (:func:`ismcgm.cii.transfer_matrix_realisations`): the errors carry the
    noise of the morphology the correction assumes.  Annuli only partly covered by the ALMA cube
    (< 90 %) are left out, as regions are, and so are annuli whose Hα map sums
    to <= 0 (no morphology for the spill model).

    Parameters
    ----------
    alma : ismcgm.cii.AlmaCube
    annuli, annuli_wcs
        :func:`annulus_masks` and the aligned WCS of their grid.
    mask_headers : dict
        The headers of the galaxy's mask file (:func:`ismcgm.maskio.read_masks`): its
        primary header holds the alignment shift that carries the annuli onto ``ha_cube``.
    ha_cube : ismcgm.io.Cube
        The reference cube (Hα).
    row : mapping
        Sample row (``id, z, ifu_psf_fwhm``).
    seed, n_mc, n_gauss, detect_snr
        As in the two-region [C II] (config ``cii:``).

    Returns
    -------
    fluxes : DataFrame
        [C II] rows in the line-flux format (:func:`ismcgm.cii.cii_line_flux_rows`), with
        ``flux_native``, ``flux_native_err``, ``upper_limit_native``.
    realisations : DataFrame
        :data:`ismcgm.cii.REALISATION_COLUMNS` (those of the regions') [erg/s/cm2].
    """
    gid = row["id"]
    table, spectra = cii.measure_galaxy(alma, annuli, annuli_wcs, gid, float(row["z"]), seed, n_mc=n_mc,
                                        n_gauss=n_gauss, detect_snr=detect_snr, joint_noise=True)
    names, t, t_mc = cii.transfer_matrix_realisations(ha_cube, (annuli, annuli_wcs, mask_headers), float(row["z"]),
                                                      float(row["ifu_psf_fwhm"]), alma.beam, seed, gid, range(n_mc))
    # an annulus whose Ha map sums to <= 0 (the noise far out) has no morphology to spill: it is left out of
    # the [C II] profile (its [C II]/Ha would be undefined anyway), so that the other annuli can be corrected
    has_ha = np.all(np.isfinite(t), axis=0)
    keep = [n for n, ok in zip(names, has_ha) if ok]
    t, t_mc = t[np.ix_(has_ha, has_ha)], t_mc[:, has_ha][:, :, has_ha]
    measured = {cii.region_names(gid, n) for n in keep}
    rows = [(c, r) in measured for c, r in zip(table["component"], table["region"])]
    table = table[rows].reset_index(drop=True)
    names = keep
    real = cii.realisation_table(table, spectra, names, t, gid, t_realisations=t_mc)
    fluxes = cii.cii_line_flux_rows(cii.spill_corrected(table, names, t, gid, realisations=real))
    for df in (fluxes, real):
        df["region"] = df["region"].map(_annulus_region)
    return fluxes, real.loc[:, list(cii.REALISATION_COLUMNS)]


def no_annulus_cii():
    """The empty outputs of :func:`annulus_cii` (a galaxy without an ALMA cube)."""
    empty = pd.DataFrame(columns=[*cii.CII_COLUMNS, "flux_native", "flux_native_err", "upper_limit_native"])
    return cii.cii_line_flux_rows(empty), pd.DataFrame(columns=list(cii.REALISATION_COLUMNS))


def gather_annuli(chunks: pd.DataFrame, detect_snr: float, intrinsic_ha_hb: float, overlap: str = "red"):
    """Line fluxes and per-realisation fluxes of the annuli (:func:`ismcgm.linefluxes.gather`)."""
    table, real, _ = gather(chunks, detect_snr, intrinsic_ha_hb, overlap)
    return table, real


def _cii_ha_where_measured(table: pd.DataFrame, components) -> pd.DataFrame:
    """The ratio table without the ``CII_HA`` rows of components that have no [C II] (``components``: those with)."""
    keep = (table["ratio"] != "CII_HA") | table["component"].isin(set(components))
    return table[keep].reset_index(drop=True)


def profile_ratios(line_fluxes, realisations, samples: pd.DataFrame, geometry: pd.DataFrame | None,
                   cii_fluxes: pd.DataFrame | None = None, cii_realisations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ratios of every annulus, per realisation, with the annulus radii.

    Returns the :func:`ismcgm.ratios.compute_ratios` columns plus
    ``r_in_kpc, r_out_kpc, r_mid_kpc`` (``region`` = the annulus key).
    ``samples`` holds ``id, logmstar, merger``; ``geometry=None`` (Voronoi
    bins) gives the ratio table as it is.  With the annuli's [C II]
    (:func:`annulus_cii`, rows of any galaxies) ``CII_HA`` is added for the
    components that have them, with [C II] at the IFU resolution
    (:func:`ismcgm.cii.native_resolution`), as for the two regions.
    """
    names = PROFILE_RATIOS
    if cii_fluxes is not None and len(cii_fluxes):
        line_fluxes = pd.concat([line_fluxes, cii.native_resolution(cii_fluxes).reindex(columns=line_fluxes.columns)],
                                ignore_index=True)
        names = PROFILE_RATIOS + ("CII_HA",)
    table = compute_ratios(preferred_grating(line_fluxes), samples, names,
                           realisations=realisation_fluxes(realisations, cii_realisations))
    if "CII_HA" in names:
        table = _cii_ha_where_measured(table, cii_fluxes["component"])
    if geometry is None:  # Voronoi bins
        return table
    geo = geometry[["component", "region", "r_in_kpc", "r_out_kpc", "r_mid_kpc"]]
    table = table.merge(geo, on=["component", "region"], how="left")
    return table.sort_values(["id", "component", "r_in_kpc"], kind="stable").reset_index(drop=True)


def _seed_of(seed: int, *keys) -> np.random.Generator:
    h = [int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little") for k in keys]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *h]))


def split_normal_draws(value, p16, p84, rng, size) -> np.ndarray:
    """Draws from split normals with modes ``value`` and 1-sigma sides ``value - p16``, ``p84 - value``."""
    value, lo, hi = (np.asarray(a, float) for a in (value, value - np.asarray(p16, float), np.asarray(p84, float) - value))
    n = rng.standard_normal((size,) + value.shape)
    # a NaN side (no error) draws the value itself; an infinite one (a percentile at a ratio <= 0, or a
    # zero denominator) draws -inf / +inf: a rank beyond every finite value, as in the ratio percentiles
    side = np.where(n < 0, np.where(np.isnan(lo), 0.0, lo), np.where(np.isnan(hi), 0.0, hi))
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(side), np.copysign(np.inf, n), value + side * n)


def median_profile(profiles: pd.DataFrame, seed: int, n_boot: int = N_BOOTSTRAP, value_col: str = "log_value"):
    """Sample median profile with bootstrap errors (see module docstring).

    Parameters
    ----------
    profiles : DataFrame
        The profile rows (``ratio, r_in_kpc, r_out_kpc, r_mid_kpc, log_value,
        log_p16, log_p84, limit``).
    seed : int
    n_boot : int
        ``0``: no errors (e.g. the noiseless truth).
    value_col : str

    Returns
    -------
    DataFrame
        ``ratio, r_in_kpc, r_out_kpc, r_mid_kpc, n, median, p16, p84``.
    """
    rows = []
    use = profiles[profiles["limit"] == "none"]
    for (ratio, r_in, r_out), g in use.groupby(["ratio", "r_in_kpc", "r_out_kpc"], sort=False):
        v = g[value_col].to_numpy(float)
        ok = np.isfinite(v)
        g, v = g[ok], v[ok]
        if not v.size:
            continue
        med = float(np.median(v))
        p16 = p84 = np.nan
        if n_boot:
            rng = _seed_of(seed, "median_profile", ratio, r_in)
            idx = rng.integers(0, v.size, size=(n_boot, v.size))
            draws = split_normal_draws(v[idx], g["log_p16"].to_numpy(float)[idx], g["log_p84"].to_numpy(float)[idx],
                                       rng, 1)[0]
            p16, _, p84 = (float(x) for x in percentiles(np.median(draws, axis=1)))
        rows.append({"ratio": ratio, "r_in_kpc": r_in, "r_out_kpc": r_out, "r_mid_kpc": 0.5 * (r_in + r_out),
                     "n": int(v.size), "median": med, "p16": p16, "p84": p84})
    out = pd.DataFrame(rows, columns=["ratio", "r_in_kpc", "r_out_kpc", "r_mid_kpc", "n", "median", "p16", "p84"])
    order = {r: i for i, r in enumerate(RATIOS)}
    return out.sort_values(["ratio", "r_in_kpc"], key=lambda s: s.map(order) if s.name == "ratio" else s,
                           kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------
# validation on the mock (issue 18 item 4)
# ---------------------------------------------------------------------------
#: Ratios of the profile-pull acceptance.
PULL_RATIOS = ("O3", "O2", "O32", "N2")

_RKEYS = ["component", "region", "ratio"]


def true_profiles(galaxies, intrinsic_ha_hb: float) -> pd.DataFrame:
    """Noiseless profiles of several galaxies: the truth maps through the same annuli.

    Parameters
    ----------
    galaxies : iterable of (true_fluxes, line_fluxes, sample, geometry)
        Per galaxy: :func:`ismcgm.validation.galaxy_true_fluxes` with the
        annulus masks, the measured annulus line fluxes, the sample row and
        the annulus geometry (:func:`annulus_table`).
    intrinsic_ha_hb : float

    Returns
    -------
    DataFrame
        The :func:`ismcgm.ratios.compute_ratios` columns of every galaxy (in the order given) with
        ``true_min_snr`` (the least true flux / measured error of the ratio's lines, and of Ha, Hb for
        the dust-corrected ones) and the annulus radii.  The truth is dust-corrected with its own
        Balmer decrement and keeps the measured detection flags
        (:func:`ismcgm.validation.true_fluxes_as_measured`).  The ratios of all galaxies are formed in
        one call (rows are keyed by id, component and region, so this is each galaxy's table).
    """
    tfs, samples, geometries, order = [], [], [], []
    for true_fluxes, line_fluxes, sample, geometry in galaxies:
        # one grating per line *before* the truth's dust correction: its Balmer decrement must use the Hb of the
        # grating the measurement uses (small annuli carried onto the two grids hold different spaxels)
        tfs.append(true_fluxes_as_measured(true_fluxes, preferred_grating(line_fluxes), intrinsic_ha_hb))
        samples.append({k: sample[k] for k in ("id", "logmstar", "merger")})
        geometries.append(geometry[["component", "region", "r_in_kpc", "r_out_kpc", "r_mid_kpc"]])
        order.append(sample["id"])
    tf = pd.concat(tfs, ignore_index=True)
    names = PROFILE_RATIOS
    if (tf["line"] == "CII").any():  # [C II] at the IFU resolution, as measured (profile_ratios)
        tf = cii.native_resolution(tf)
        names = PROFILE_RATIOS + ("CII_HA",)
    table = compute_ratios(tf, pd.DataFrame(samples), names)
    if "CII_HA" in names:  # components are named after their galaxy: the [C II] rows of those that have one
        table = _cii_ha_where_measured(table, tf.loc[tf["line"] == "CII", "component"])
    rank = {gid: i for i, gid in enumerate(order)}
    table = table.sort_values("id", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)
    # S/N at the truth of the ratio's lines (and of Ha, Hb for the dust-corrected ones): true flux / measured error
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = (tf["flux"] / tf["flux_err"]).to_numpy(float)
    snr = pd.Series(snr, index=pd.MultiIndex.from_frame(tf[["component", "region", "line"]]))
    out = []
    for comp, region, ratio in zip(table["component"], table["region"], table["ratio"]):
        d = RATIO_DEFINITIONS[ratio]
        lines = set(d.numerator) | set(d.denominator) | ({"HA", "HB"} if d.dust_corrected else set())
        lines = {ln for ln in lines if ln not in TIED_RATIOS}  # tied lines repeat their partner's S/N
        out.append(min(float(snr.get((comp, region, ln), np.nan)) for ln in lines))
    table["true_min_snr"] = out
    return table.merge(pd.concat(geometries, ignore_index=True), on=["component", "region"], how="left")


def asymmetric_pull(value, p16, p84, truth) -> np.ndarray:
    """``(value - truth) / sigma`` with the 1-sigma side facing the truth (``p84 - value`` when
    the value lies below the truth, ``value - p16`` otherwise)."""
    value, p16, p84, truth = (np.asarray(a, float) for a in (value, p16, p84, truth))
    sigma = np.where(value < truth, p84 - value, value - p16)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma > 0, (value - truth) / sigma, np.nan)


def profile_pulls(measured: pd.DataFrame, truth: pd.DataFrame, min_true_snr: float = 3.0) -> pd.DataFrame:
    """Per annulus and ratio: ``true_log_value`` and ``pull``.

    Taken over the annuli whose ratio lines (and Hα, Hβ of the dust
    correction) all reach ``min_true_snr`` at the truth (true flux / measured
    error, ``true_min_snr`` of :func:`true_profiles`) and have a measured
    value: selecting on the *measured* detections instead would favour the
    realisations whose noise pushed a near-threshold line up (as for the
    flux pulls, :func:`ismcgm.validation.flux_pulls`).
    """
    m = measured[(measured["limit"] == "none") & np.isfinite(measured["log_value"])]
    t = truth[_RKEYS + ["log_value", "true_min_snr"]].rename(columns={"log_value": "true_log_value"})
    out = m.merge(t, on=_RKEYS, how="inner")
    out = out[np.isfinite(out["true_log_value"]) & (out["true_min_snr"] >= min_true_snr)].copy()
    out["pull"] = asymmetric_pull(out["log_value"], out["log_p16"], out["log_p84"], out["true_log_value"])
    return out.reset_index(drop=True)


def pull_summary(pulls: pd.DataFrame) -> pd.DataFrame:
    """``ratio, n, median_pull, std_pull`` pooled over galaxies and annuli."""
    p = pulls[np.isfinite(pulls["pull"])]
    out = p.groupby("ratio", sort=False)["pull"].agg(n="size", median_pull="median", std_pull="std").reset_index()
    order = {r: i for i, r in enumerate(RATIOS)}
    return out.sort_values("ratio", key=lambda s: s.map(order)).reset_index(drop=True)


#: Dust-corrected ratios of one line over one line, neither a Balmer line, whose pulls :func:`dust_pull_terms`
#: splits (O2 = [O II]/Hb shares Hb with the decrement: its two parts are correlated by construction).
DUST_SPLIT_RATIOS = ("O32", "N2O2")


def dust_coefficient(ratio: str) -> float:
    """``c`` of ``log R_corr = log R_obs + c log10((Ha/Hb) / intrinsic)`` for a dust-corrected ratio of one line
    over one line (Calzetti: ``c = (k_num - k_den) / (k_Hb - k_Ha)``, e.g. -1.10 for O32, -2.00 for N2O2)."""
    d = RATIO_DEFINITIONS[ratio]
    if not (d.dust_corrected and len(d.numerator) == len(d.denominator) == 1):
        raise ValueError(f"{ratio}: not a dust-corrected ratio of one line over one line")
    (num,), (den,) = d.numerator, d.denominator
    return float((k_line(num) - k_line(den)) / (k_line("HB") - k_line("HA")))


def dust_pull_terms(pulls: pd.DataFrame, line_fluxes: pd.DataFrame, true_fluxes: pd.DataFrame,
                    ratios=DUST_SPLIT_RATIOS) -> pd.DataFrame:
    """The two parts of a dust-corrected ratio's profile pull, per annulus (a diagnostic of issue 18).

    ``log R_corr = log R_obs + c log(Ha/Hb / intrinsic)`` (:func:`dust_coefficient`): the deviation from the
    truth is ``dev_raw + c dev_balmer``, the deviations (measured - true, dex) of the uncorrected ratio and of
    the Balmer decrement, with errors ``sigma_raw``, ``sigma_balmer`` from the lines' ``flux_err`` in quadrature
    (for ratios whose lines are not Ha or Hb, :data:`DUST_SPLIT_RATIOS`: the two parts share no line).  Both
    parts can have unit pulls while the corrected ratio's pulls are narrower or wider, when the two deviations
    are correlated in the data (:func:`dust_pull_summary`).

    Parameters
    ----------
    pulls : pandas.DataFrame
        :func:`profile_pulls` (the annuli judged).
    line_fluxes : pandas.DataFrame
        The annuli's line fluxes (``component, region, grating, line, flux, flux_err``).
    true_fluxes : pandas.DataFrame
        The truth through the same annuli (``component, region, grating, line, true_flux``).

    Returns
    -------
    pandas.DataFrame
        ``id, component, region, ratio, coef, dev_raw, sigma_raw, dev_balmer, sigma_balmer``.
    """
    keys = ["component", "region", "line"]
    m = preferred_grating(line_fluxes)[keys + ["grating", "flux", "flux_err"]]
    t = true_fluxes[keys + ["grating", "true_flux"]]
    f = m.merge(t, on=keys + ["grating"], how="inner").set_index(keys)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.log10(f["flux"] / f["true_flux"])
        sig = f["flux_err"] / (f["flux"] * np.log(10.0))
    parts = []
    for ratio in ratios:
        (num,), (den,) = RATIO_DEFINITIONS[ratio].numerator, RATIO_DEFINITIONS[ratio].denominator
        rows = pulls.loc[pulls["ratio"] == ratio, ["id", "component", "region"]].reset_index(drop=True)

        def at(line, s, rows=rows):  # s at (component, region, line) of every row (NaN where absent)
            idx = pd.MultiIndex.from_arrays([rows["component"], rows["region"], [line] * len(rows)])
            return s.reindex(idx).to_numpy(float)

        parts.append(rows.assign(ratio=ratio, coef=dust_coefficient(ratio),
                                 dev_raw=at(num, dev) - at(den, dev), sigma_raw=np.hypot(at(num, sig), at(den, sig)),
                                 dev_balmer=at("HA", dev) - at("HB", dev),
                                 sigma_balmer=np.hypot(at("HA", sig), at("HB", sig))))
    cols = ["id", "component", "region", "ratio", "coef", "dev_raw", "sigma_raw", "dev_balmer", "sigma_balmer"]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return out[cols]


def dust_pull_summary(terms: pd.DataFrame) -> pd.DataFrame:
    """Per ratio of :func:`dust_pull_terms`: ``n, n_components``, the pull std of the uncorrected ratio
    (``std_pull_raw``), of the Balmer decrement (``std_pull_balmer``), of their linear sum ``dev_raw + c
    dev_balmer`` over its quadrature error (``std_pull_linear``, close to the profile pull's std) and the
    correlation of the two deviations (``corr_raw_balmer``; with ``c < 0`` a positive one narrows the pulls)."""
    rows = []
    for ratio, g in terms.groupby("ratio", sort=False):
        g = g[np.isfinite(g[["dev_raw", "sigma_raw", "dev_balmer", "sigma_balmer"]]).all(axis=1)]
        c = g["coef"].to_numpy(float)
        lin = (g["dev_raw"] + c * g["dev_balmer"]) / np.sqrt(g["sigma_raw"] ** 2 + (c * g["sigma_balmer"]) ** 2)
        n = len(g)
        rows.append({"ratio": ratio, "n": n, "n_components": g["component"].nunique(),
                     "coef": float(c[0]) if n else np.nan,
                     "std_pull_raw": float((g["dev_raw"] / g["sigma_raw"]).std()) if n > 1 else np.nan,
                     "std_pull_balmer": float((g["dev_balmer"] / g["sigma_balmer"]).std()) if n > 1 else np.nan,
                     "std_pull_linear": float(lin.std()) if n > 1 else np.nan,
                     "corr_raw_balmer": float(np.corrcoef(g["dev_raw"], g["dev_balmer"])[0, 1]) if n > 2 else np.nan})
    return pd.DataFrame(rows, columns=["ratio", "n", "n_components", "coef", "std_pull_raw", "std_pull_balmer",
                                       "std_pull_linear", "corr_raw_balmer"])


def outermost_cgm_annulus(geometry: pd.DataFrame, min_frac: float = 0.5) -> pd.DataFrame:
    """Per component, the outermost annulus whose spaxels lie mostly (>= ``min_frac``) in the CGM mask."""
    g = geometry[geometry["frac_cgm"] >= min_frac]
    return g.sort_values("r_in_kpc").groupby("component", sort=False).tail(1).reset_index(drop=True)


def cgm_consistency(profiles: pd.DataFrame, geometry: pd.DataFrame, two_region: pd.DataFrame,
                    nsigma: float = 1.0, ratios=PROFILE_RATIOS) -> pd.DataFrame:
    """Outermost annulus inside the CGM mask against the two-region CGM value.

    Agreement: ``|annulus - CGM| <= nsigma * sqrt(s_ann^2 + s_cgm^2)`` with
    each 1-sigma taken on the side facing the other value; pairs where
    either value is a limit are left out.
    """
    outer = outermost_cgm_annulus(geometry)[["component", "region"]]
    a = profiles.merge(outer, on=["component", "region"])
    a = a[(a["limit"] == "none") & a["ratio"].isin(ratios)]
    c = two_region[(two_region["region"] == "CGM") & (two_region["limit"] == "none")]
    c = c[["component", "ratio", "log_value", "log_p16", "log_p84"]]
    m = a.merge(c, on=["component", "ratio"], suffixes=("", "_cgm"))
    below = m["log_value"] < m["log_value_cgm"]
    s_a = np.where(below, m["log_p84"] - m["log_value"], m["log_value"] - m["log_p16"])
    s_c = np.where(below, m["log_value_cgm"] - m["log_p16_cgm"], m["log_p84_cgm"] - m["log_value_cgm"])
    out = m[["id", "component", "region", "r_in_kpc", "r_out_kpc", "ratio", "log_value", "log_value_cgm"]].copy()
    out["delta"] = m["log_value"] - m["log_value_cgm"]
    out["sigma"] = np.hypot(s_a, s_c)
    out["agree"] = np.abs(out["delta"]) <= nsigma * out["sigma"]
    return out.reset_index(drop=True)


def median_check(measured_median: pd.DataFrame, true_median: pd.DataFrame) -> pd.DataFrame:
    """Sample median profile against the true median profile (same components) per ratio and annulus.

    ``within_1sigma``: the true median lies inside the bootstrap 16-84 range; ``within_2sigma``: inside
    twice each side.
    """
    keys = ["ratio", "r_in_kpc", "r_out_kpc"]
    m = measured_median.merge(true_median[keys + ["median"]].rename(columns={"median": "true_median"}), on=keys)
    t = m["true_median"]
    m["within_1sigma"] = (t >= m["p16"]) & (t <= m["p84"])
    m["within_2sigma"] = (t >= m["median"] - 2 * (m["median"] - m["p16"])) & (t <= m["median"] + 2 * (m["p84"] - m["median"]))
    return m
