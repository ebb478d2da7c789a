"""Models against the observations: Delta log(ratio) profiles relative to 1 kpc and the observed boxes of Figs. 5 and 7."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ismcgm.ratios import RATIO_DEFINITIONS

from ..errors import InputError
from .config import DELTA_RATIOS, R_REF_KPC


def model_ratios(grid_df: pd.DataFrame, ratios=DELTA_RATIOS) -> pd.DataFrame:
    """log10 of each ratio (SPEC section 7) per model row, long format.

    Returns
    -------
    pandas.DataFrame
        ``name, r_kpc, density_law, nh_variant, log_nh, log_u, grid_source,
        missing, ratio, log_ratio``.  ``log_ratio`` is NaN where a line is
        missing or a ratio is not positive.
    """
    meta = ["name", "r_kpc", "density_law", "nh_variant", "log_nh", "log_u", "grid_source", "missing"]
    parts = []
    for ratio in ratios:
        d = RATIO_DEFINITIONS[ratio]
        num = grid_df[list(d.numerator)].sum(axis=1, min_count=len(d.numerator))
        den = grid_df[list(d.denominator)].sum(axis=1, min_count=len(d.denominator))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (num / den).to_numpy(dtype=float)
            log_value = np.where(value > 0, np.log10(np.where(value > 0, value, 1.0)), np.nan)
        part = grid_df[meta].copy()
        part["ratio"] = ratio
        part["log_ratio"] = log_value
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def delta_ratios(grid_df: pd.DataFrame, ratios=DELTA_RATIOS) -> pd.DataFrame:
    """Delta log(ratio) relative to r = 1 kpc (Figs. 5 and 7).

    Parameters
    ----------
    grid_df : pandas.DataFrame
        Output of :func:`grid_from_packaged` or :func:`grid_from_cloudy_runs`.
    ratios : sequence of str
        Ratio names (default O3, O2, O32, R23, N2, N2O2).

    Returns
    -------
    pandas.DataFrame
        :func:`model_ratios` plus ``delta_log_ratio`` = log ratio(r) - log
        ratio(1 kpc) of the same density law and N/H variant (NaN where
        either is missing), sorted by ratio, law, variant and r.
    """
    long = model_ratios(grid_df, ratios)
    keys = ["ratio", "density_law", "nh_variant"]
    ref = long[np.isclose(long["r_kpc"], R_REF_KPC)][keys + ["log_ratio"]]
    ref = ref.rename(columns={"log_ratio": "_ref"}).drop_duplicates(keys)
    out = long.merge(ref, on=keys, how="left")
    out["delta_log_ratio"] = out["log_ratio"] - out["_ref"]
    out = out.drop(columns="_ref")
    order = {r: i for i, r in enumerate(ratios)}
    out = out.assign(_o=out["ratio"].map(order)).sort_values(["_o", "density_law", "nh_variant", "r_kpc"], kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)


#: Columns of the observed-box table.
BOX_COLUMNS = ("ratio", "p16", "p84", "r_min", "r_max")


def observed_boxes_from_stats(stats_df: pd.DataFrame, r_min: float, r_max: float) -> pd.DataFrame:
    """Observed boxes from the statistics table (``ratio, shift_p16, shift_p84``).

    ``r_min`` / ``r_max`` [kpc] is the sample's r_CGM range.
    """
    return pd.DataFrame(
        {
            "ratio": stats_df["ratio"].to_numpy(),
            "p16": stats_df["shift_p16"].to_numpy(float),
            "p84": stats_df["shift_p84"].to_numpy(float),
            "r_min": float(r_min),
            "r_max": float(r_max),
        }
    )[list(BOX_COLUMNS)]


def r_cgm_range(regions: pd.DataFrame) -> tuple[float, float]:
    """(min, max) circularised CGM radius [kpc] of the sample's components."""
    rows = regions[regions["region"] == "CGM"] if "region" in regions.columns else regions
    r = pd.to_numeric(rows["r_cgm_kpc"], errors="coerce").to_numpy(float)
    r = r[np.isfinite(r) & (r > 0)]
    if r.size == 0:
        raise InputError(None, "regions table", "no finite r_cgm_kpc", "rebuild results/tables/<variant>/regions.csv")
    return float(r.min()), float(r.max())


def observed_boxes(stats_df: pd.DataFrame, regions: pd.DataFrame) -> pd.DataFrame:
    """Observed 16-84 percentile Delta boxes spanning the sample's r_CGM range."""
    r_min, r_max = r_cgm_range(regions)
    return observed_boxes_from_stats(stats_df, r_min, r_max)
