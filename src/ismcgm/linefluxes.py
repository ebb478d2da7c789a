"""Line fluxes from Monte Carlo realisations: one chunk of fits, and the gather.

The workflow splits the ``mc.n_realisations`` realisations of every
(component, region, grating) spectrum into chunks of ``mc.chunk_size``
(:func:`ismcgm.mcfit.chunk_realisations`); :func:`ismcgm.mcfit.chunk_columns`
draws and fits one chunk of one galaxy and grating (a workflow job, ``mc_fit``,
fits one chunk of a galaxy in all its gratings; :func:`fit_chunk` is the same
as a table), :func:`gather` turns all chunks into the line-flux table (SPEC
sections 4-6).

Every realisation is drawn from its own random stream
(:func:`ismcgm.mc.rng_for`) and fitted on its own (the fitter's results for
one realisation do not depend on the others in its batch), so the tables are
bit-identical for any chunk size and core count.

Dust correction (SPEC 6) is done per realisation: E(B-V)_gas from the
Hα/Hβ of realisation *i* (Hβ from the preferred grating, see
:data:`ismcgm.ratios.GRATING_PREFERENCE`), every line of that realisation
corrected with it, and the distributions summarised with percentiles
afterwards: ``flux_dustcorr`` and ``ebv_gas`` are medians, their errors half
the 16th-84th percentile range (:func:`ismcgm.mc.half_width`), never a
standard deviation (a realisation with a weak Hb has a huge Ha/Hb, and the
standard deviation of such a heavy tail says nothing about the bulk).  So the
errors include the Balmer-decrement uncertainty.  A region whose Ha or Hb is
not detected gets no correction (``ebv_method = none``), nor does one whose
decrement (the median Hα/Hβ of its realisations) is below the intrinsic
value; otherwise each realisation keeps its own E(B-V), also a negative one
(the rules, also for non-positive fluxes, of :func:`ismcgm.dust.ebv_realisations`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import instrument as ins
from . import instruments
from . import mc
from .dust import correct, ebv_realisations
from .fit import fit_spectra
from .mcfit import chunk_columns
from .ratios import preferred_grating

#: Columns of ``line_fluxes.csv`` (issue contract).
LINE_FLUX_COLUMNS = [
    "id", "component", "region", "grating", "line", "flux", "flux_err", "snr", "detected",
    "upper_limit", "flux_dustcorr", "flux_dustcorr_err", "ebv_gas", "ebv_gas_err", "velocity_kms",
    "sigma_kms", "ebv_method",
]

TABLE_COMMENT = (
    "Emission-line fluxes per component, region, grating and line (SPEC 4-6).\n"
    "flux, flux_err, upper_limit, flux_dustcorr, flux_dustcorr_err in erg s^-1 cm^-2;\n"
    "flux = median of the Monte Carlo realisations, flux_err = their standard deviation;\n"
    "upper_limit = 3-sigma limit (three-channel sums) where not detected;\n"
    "dust correction Calzetti (2000) per realisation, E(B-V)_gas from Ha/Hb; flux_dustcorr, ebv_gas = medians,\n"
    "their _err = half the 16-84 percentile range; ebv_method = balmer | none (Ha or Hb not detected: no correction);\n"
    "velocity_kms, sigma_kms medians [km/s]."
)


def fit_chunk(gid, spectra, z, grating, realisations, seed, fit_cfg, cube_draws=None) -> pd.DataFrame:
    """:func:`ismcgm.mcfit.chunk_columns` as a table: ``id, component, region, grating, realisation, line, flux,
    flux3, velocity_kms, sigma_kms``, one row per region, line and realisation."""
    return pd.DataFrame(chunk_columns(gid, spectra, z, grating, realisations, seed, fit_cfg, cube_draws))


def nominal_model(spectrum, z: float, fit_cfg) -> np.ndarray:
    """Best-fit model of one nominal spectrum (:func:`ismcgm.extract.read_spectrum`) with the ``fit:`` settings (Fig. 2)."""
    grating = spectrum.meta["GRATING"]
    res = fit_spectra(spectrum.wave_um, spectrum.flux, spectrum.err, z, grating, method=fit_cfg["method"],
                      cont_order=fit_cfg["continuum_order"], n_components=fit_cfg["n_components"])
    return res.model(spectrum.wave_um)


def _dust(real: pd.DataFrame, table: pd.DataFrame, intrinsic: float) -> tuple[pd.DataFrame, pd.Series]:
    """Per-realisation E(B-V)_gas and dust-corrected fluxes (see module docstring).

    Returns the realisations with ``ebv`` and ``flux_dustcorr`` and, per
    (component, region), the method used (``balmer`` or ``none``).
    """
    pref = preferred_grating(real, keys=("component", "region", "line", "realisation"))
    balmer = pref[pref["line"].isin(["HA", "HB"])].set_index(
        ["component", "region", "realisation", "line"])["flux"].unstack("line")
    detected = preferred_grating(table).set_index(["component", "region", "line"])["detected"]
    parts, methods = [], {}
    if {"HA", "HB"} <= set(balmer.columns):
        for (comp, region), grp in balmer.groupby(level=["component", "region"], sort=False):
            measured = bool(detected.get((comp, region, "HA"), False)) and bool(detected.get((comp, region, "HB"), False))
            ebv = ebv_realisations(grp["HA"].to_numpy(), grp["HB"].to_numpy(), intrinsic, measured=measured)
            methods[(comp, region)] = "balmer" if measured else "none"
            parts.append(pd.Series(ebv, index=grp.index, name="ebv"))
    ebv = pd.concat(parts) if parts else pd.Series(dtype=float, name="ebv")
    real = real.join(ebv, on=["component", "region", "realisation"])
    wave_A = real["line"].map(ins.LINE_WAVELENGTHS).to_numpy()
    e = real["ebv"].to_numpy()
    corr = correct(real["flux"].to_numpy(), wave_A, np.nan_to_num(e, nan=0.0))
    real["flux_dustcorr"] = np.where(np.isfinite(e), corr, np.nan)
    return real, pd.Series(methods, name="ebv_method", dtype=object)


def _blocks(real: pd.DataFrame, keys: list[str]):
    """Rows of ``real`` as equal blocks per group of ``keys``: ``(first row of each group, n)``.

    ``None`` unless every group's rows are contiguous, in order of first
    appearance (as :meth:`pandas.DataFrame.groupby` with ``sort=False`` lists
    them) and equally many -- the layout of :func:`gather`'s sorted
    realisations, where every line has all its realisations.  Then a column
    reshaped to ``(n_groups, n)`` holds one group per row.
    """
    if not len(real):
        return None
    codes = real.groupby(keys, sort=False).ngroup().to_numpy()
    counts = np.bincount(codes)
    n = int(counts[0])
    if np.any(counts != n) or np.any(np.diff(codes) < 0):
        return None
    return real.iloc[::n][keys].reset_index(drop=True), n


def _matrix(real: pd.DataFrame, col: str, n: int) -> np.ndarray:
    return real[col].to_numpy(float).reshape(-1, n)


def _row_nanmedian(m: np.ndarray) -> np.ndarray:
    """:func:`_nanmedian` of every row."""
    return np.array([_nanmedian(r) for r in m]) if len(m) else np.array([])


def _flux_summaries(real: pd.DataFrame, detect_snr: float) -> pd.DataFrame:
    """Median, error, detection and limit of every (component, region, grating, line) (SPEC 4-5)."""
    keys = ["id", "component", "region", "grating", "line"]
    blocks = _blocks(real, keys)
    if blocks is None:
        return _flux_summaries_by_group(real, detect_snr)
    out, n = blocks
    flux, flux3 = _matrix(real, "flux", n), _matrix(real, "flux3", n)
    if not np.isfinite(flux).all():  # failed fits: the per-group path's NaN handling
        return _flux_summaries_by_group(real, detect_snr)
    s = mc.summarise(flux.T, detect_snr, flux3.T)
    out = out.assign(flux=s.flux, flux_err=s.err, snr=s.snr, detected=np.asarray(s.detected, bool),
                     upper_limit=s.upper_limit, velocity_kms=_row_nanmedian(_matrix(real, "velocity_kms", n)),
                     sigma_kms=_row_nanmedian(_matrix(real, "sigma_kms", n)))
    return out


def _flux_summaries_by_group(real: pd.DataFrame, detect_snr: float) -> pd.DataFrame:
    """:func:`_flux_summaries` one group at a time (any layout of ``real``)."""
    rows = []
    for (gid, comp, region, grating, line), g in real.groupby(["id", "component", "region", "grating", "line"],
                                                              sort=False):
        s = mc.summarise(g["flux"].to_numpy(), detect_snr, g["flux3"].to_numpy())
        rows.append({
            "id": gid, "component": comp, "region": region, "grating": grating, "line": line,
            "flux": s.flux, "flux_err": s.err, "snr": s.snr, "detected": bool(s.detected),
            "upper_limit": s.upper_limit,
            "velocity_kms": _nanmedian(g["velocity_kms"].to_numpy()),
            "sigma_kms": _nanmedian(g["sigma_kms"].to_numpy()),
        })
    return pd.DataFrame(rows)


#: How lines measured in two gratings are used (config ``ratios.overlap``).
OVERLAP_MODES = ("red", "combine")

#: Grating name of the inverse-variance combination of two gratings.
COMBINED = "combined"

#: The bluer setup of the overlap lines (:data:`ismcgm.instruments.OVERLAP_BASE`) and the
#: overlap-table columns named after it (``flux_g235m``, ``ratio_red_over_g235m``).
BASE = instruments.OVERLAP_BASE
FLUX_BASE = f"flux_{BASE}"
RATIO_RED_OVER_BASE = f"ratio_red_over_{BASE}"


def _blue_red(table: pd.DataFrame):
    """Rows of the overlap base setup and, per line, of the best-ranked other setup."""
    blue = table[table["grating"] == BASE]
    red = table[~table["grating"].isin([BASE, COMBINED])]
    rank = red["grating"].map(lambda g: instruments.get_setup(g).rank)
    red = red.assign(_rank=rank).sort_values("_rank", kind="stable")
    red = red.drop_duplicates(["id", "component", "region", "line"], keep="first").drop(columns="_rank").sort_index()
    return blue, red


def overlap_scale(overlap: pd.DataFrame) -> float:
    """Median G395M(H)/G235M flux ratio of the lines detected in both (1 where there are none)."""
    r = overlap[RATIO_RED_OVER_BASE].to_numpy(float) if len(overlap) else np.array([])
    r = r[np.isfinite(r) & (r > 0)]
    return float(np.median(r)) if r.size else 1.0


def combine_overlap(real: pd.DataFrame, table: pd.DataFrame, scale: float) -> pd.DataFrame:
    """Inverse-variance combination of the lines measured in G235M and G395M/H, per realisation.

    G235M fluxes are first put on the G395M(H) scale (multiplied by ``scale``,
    :func:`overlap_scale`); the weights are ``1 / flux_err**2`` of each
    grating's summary (the G235M error scaled likewise).  The combined rows
    have grating :data:`COMBINED` and are preferred by
    :func:`ismcgm.ratios.preferred_grating`.
    """
    keys = ["id", "component", "region", "line"]
    blue, red = (t.set_index(keys) for t in _blue_red(table))
    both = blue.index.intersection(red.index)
    parts = []
    for key in both:
        sb, sr = scale * float(blue.loc[key, "flux_err"]), float(red.loc[key, "flux_err"])
        if not (np.isfinite(sb) and np.isfinite(sr) and sb > 0 and sr > 0):
            continue
        wb, wr = 1.0 / sb**2, 1.0 / sr**2
        sel = (real["id"] == key[0]) & (real["component"] == key[1]) & (real["region"] == key[2]) & (
            real["line"] == key[3])
        rb = real[sel & (real["grating"] == BASE)].set_index("realisation")
        rr = real[sel & (real["grating"] == red.loc[key, "grating"])].set_index("realisation")
        rb = rb.reindex(rr.index)
        comb = rr.copy()
        for col in ("flux", "flux3"):
            comb[col] = (wb * scale * rb[col] + wr * rr[col]) / (wb + wr)
        comb["grating"] = COMBINED
        parts.append(comb.reset_index())
    if not parts:
        return real
    return pd.concat([real] + [p[real.columns] for p in parts], ignore_index=True)


def gather(chunks: pd.DataFrame, detect_snr: float, intrinsic_ha_hb: float, overlap_mode: str = "red"):
    """Line-flux table, per-realisation table and grating overlap from all chunks.

    Parameters
    ----------
    chunks : DataFrame
        The concatenated Monte Carlo chunks (:func:`fit_chunk`).
    detect_snr : float
        Detection threshold.
    intrinsic_ha_hb : float
        Intrinsic Ha/Hb of the dust correction.
    overlap_mode : str
        ``red`` (SPEC 5: G395M/H for lines in both gratings) or ``combine``
        (also the inverse-variance combination, :func:`combine_overlap`).

    Returns
    -------
    line_fluxes : DataFrame
        :data:`LINE_FLUX_COLUMNS`.
    realisations : DataFrame
        Per realisation: ``component, region, grating, line, realisation,
        flux, flux3, flux_dustcorr, ebv``.
    overlap : DataFrame
        Lines measured in both G235M and G395M/H: ``id, component, region,
        line, flux_g235m, flux_red, red_grating, ratio_red_over_g235m,
        ratio_err``.
    """
    if overlap_mode not in OVERLAP_MODES:
        raise ValueError(f"overlap mode {overlap_mode!r}: use one of {OVERLAP_MODES}")
    real = chunks.sort_values(["id", "component", "region", "grating", "line", "realisation"], kind="stable")
    real = real.reset_index(drop=True)
    table = _flux_summaries(real, detect_snr)
    overlap = grating_overlap(table)
    if overlap_mode == "combine":
        real = combine_overlap(real, table, overlap_scale(overlap))
        table = _flux_summaries(real, detect_snr)
    real, methods = _dust(real, table, intrinsic_ha_hb)
    dust = _dust_summaries(real, methods)
    table = table.merge(dust, on=["component", "region", "grating", "line"], how="left", sort=False)
    return table.loc[:, LINE_FLUX_COLUMNS], real, overlap


def _dust_summaries(real: pd.DataFrame, methods: pd.Series) -> pd.DataFrame:
    """Median and half 16-84 width of the dust-corrected flux and E(B-V) of every (component, region, grating, line)."""
    keys = ["component", "region", "grating", "line"]
    blocks = _blocks(real, keys)
    if blocks is None:
        return _dust_summaries_by_group(real, methods)
    out, n = blocks
    fd, e = _matrix(real, "flux_dustcorr", n), _matrix(real, "ebv", n)
    _, fd_med, _ = mc.percentiles(fd)
    _, e_med, _ = mc.percentiles(e)
    method = [methods.get((c, r), "none") for c, r in zip(out["component"], out["region"])]
    return out.assign(flux_dustcorr=fd_med, flux_dustcorr_err=mc.half_width(fd), ebv_gas=e_med,
                      ebv_gas_err=mc.half_width(e), ebv_method=method)


def _dust_summaries_by_group(real: pd.DataFrame, methods: pd.Series) -> pd.DataFrame:
    """:func:`_dust_summaries` one group at a time (any layout of ``real``)."""
    dust_rows = []
    for (comp, region, grating, line), g in real.groupby(["component", "region", "grating", "line"], sort=False):
        fd, e = g["flux_dustcorr"].to_numpy(), g["ebv"].to_numpy()
        _, fd_med, _ = mc.percentiles(fd)
        _, e_med, _ = mc.percentiles(e)
        dust_rows.append({
            "component": comp, "region": region, "grating": grating, "line": line,
            "flux_dustcorr": float(fd_med), "flux_dustcorr_err": float(mc.half_width(fd)),
            "ebv_gas": float(e_med), "ebv_gas_err": float(mc.half_width(e)),
            "ebv_method": methods.get((comp, region), "none"),
        })
    return pd.DataFrame(dust_rows)


def grating_overlap(table: pd.DataFrame) -> pd.DataFrame:
    """G395M(or H)/G235M flux ratio of lines measured in both gratings (SPEC 5)."""
    blue, red = _blue_red(table)
    m = blue.merge(red, on=["id", "component", "region", "line"], suffixes=("_b", "_r"))
    m = m[m["detected_b"] & m["detected_r"]]
    ratio = m["flux_r"] / m["flux_b"]
    err = ratio * np.hypot(m["flux_err_r"] / m["flux_r"], m["flux_err_b"] / m["flux_b"])
    return pd.DataFrame({"id": m["id"], "component": m["component"], "region": m["region"], "line": m["line"],
                         FLUX_BASE: m["flux_b"], "flux_red": m["flux_r"], "red_grating": m["grating_r"],
                         RATIO_RED_OVER_BASE: ratio, "ratio_err": err})


def _nanmedian(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else np.nan

