"""N/O abundances from N2O2 and R23 (SPEC section 10, paper Sect. 5.1, Appendix B).

Methods
-------
``pagel92``
    Pagel et al. (1992), paper eq. B2, with the Amayo et al. (2021) ionisation
    correction::

        log(N/O) = log(4/3 N2O2) + 0.307 - 0.02 log t - 0.726 / t + log ICF

    ``4/3`` adds [N II]6548 = [N II]6583/3 (N2O2 uses 6583 only);
    ``log ICF = +0.1`` (N/O = N+/O+ x ICF, Amayo et al. 2021).  t =
    T_e(N+)/1e4 K ~ T_e(O+)/1e4 K from R23 with the paper's eq. B3 as
    printed (Thurston et al. 1996), x = log R23::

        t = (6065 + 1600 x + 1878 x^2 + 1803 x^3) / 1e4

``strom17``
    Strom et al. (2017), paper eq. B4: ``log(N/O) = 0.65 log N2O2 - 0.57``.

N2O2 and R23 are linear, dust-corrected ratios (SPEC section 7).  All
functions are vectorised: pass arrays of Monte Carlo realisations.

Tables
------
:func:`abundance_table` takes a DataFrame with columns ``id, component,
region, N2O2, R23`` and optionally ``mc`` (realisation index).  With ``mc``,
each (id, component, region) has many rows; log(N/O) is computed per
realisation and summarised by the median (``log_no``), the 16th / 84th
percentiles and ``log_no_err`` = (p84 - p16)/2.  Without ``mc`` (one row per
group) ``log_no`` is the value and the errors are NaN.  Realisations with a
non-positive or non-finite ratio are dropped.

:func:`delta_table` gives Delta log(N/O) = CGM - ISM per (id, component,
method); with ``mc`` the difference is taken per realisation index (the
ISM and CGM draws are independent, so any pairing is valid) and summarised
as above.  One extra row per method, ``id = 'SAMPLE'``, ``component =
'all'``, holds the sample median of the per-component deltas and
``delta_err`` = 1.235 std / sqrt(N) (as the shift of SPEC section 8);
with ``mc`` also the 16/84 percentiles of the per-realisation sample medians.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import mc
from .errors import InputError
from .ratios import RATIO_DEFINITIONS, preferred_grating
from .stats import SIGMA_MED_FACTOR

#: log ICF(N+/O+) of Amayo et al. (2021): log(N/O) = log(N+/O+) + 0.1.
AMAYO_LOG_ICF = 0.1

#: Coefficients of eq. B3 (T_e in K, polynomial in log R23).
B3_COEFFS_K = (6065.0, 1600.0, 1878.0, 1803.0)

#: Methods of :func:`log_no`.
METHODS = ("pagel92", "strom17")

#: Name of the sample row of :func:`delta_table`.
SAMPLE_ID = "SAMPLE"

#: Input columns of :func:`abundance_table`.
INPUT_COLUMNS = ("id", "component", "region", "N2O2", "R23")

#: Output columns of :func:`abundance_table`.
ABUNDANCE_COLUMNS = (
    "id",
    "component",
    "region",
    "method",
    "log_no",
    "log_no_err",
    "log_no_p16",
    "log_no_p84",
    "n_mc",
)

#: Output columns of :func:`delta_table`.
DELTA_COLUMNS = ("id", "component", "method", "delta_log_no", "delta_err", "delta_p16", "delta_p84", "n")

_KEYS = ["id", "component", "region"]


def _log_positive(x):
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)


def t_n_plus(r23):
    """t = T_e(N+)/1e4 K from linear R23 (paper eq. B3 as printed)."""
    x = _log_positive(r23)
    a0, a1, a2, a3 = B3_COEFFS_K
    return (a0 + a1 * x + a2 * x**2 + a3 * x**3) / 1e4


def log_no_pagel(n2o2, r23, log_icf=AMAYO_LOG_ICF):
    """log(N/O) of Pagel et al. (1992) eq. B2 with t from eq. B3 and an ICF.

    Parameters
    ----------
    n2o2, r23 : array_like
        Linear [N II]6583/[O II]3728 and R23.
    log_icf : float
        log ICF(N+/O+); default +0.1 (Amayo et al. 2021); 0 gives N+/O+.

    Returns
    -------
    numpy.ndarray
        log(N/O); NaN where a ratio is not positive or t <= 0.
    """
    t = np.asarray(t_n_plus(r23), dtype=float)
    t = np.where(t > 0, t, np.nan)
    return _log_positive(4.0 / 3.0 * np.asarray(n2o2, dtype=float)) + 0.307 - 0.02 * np.log10(t) - 0.726 / t + log_icf


def log_no_strom(n2o2):
    """log(N/O) = 0.65 log N2O2 - 0.57 (Strom et al. 2017, eq. B4)."""
    return 0.65 * _log_positive(n2o2) - 0.57


def log_no(method: str, n2o2, r23=None):
    """log(N/O) with ``method`` in :data:`METHODS`."""
    if method == "pagel92":
        if r23 is None:
            raise InputError(None, "abundance input", "the pagel92 method needs R23", "give the R23 realisations")
        return log_no_pagel(n2o2, r23)
    if method == "strom17":
        return log_no_strom(n2o2)
    raise InputError(None, "config", f"unknown N/O method {method!r}", f"use one of {', '.join(METHODS)}")


def _summary(values: np.ndarray) -> tuple[float, float, float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan, np.nan, 0
    if v.size == 1:
        return float(v[0]), np.nan, np.nan, np.nan, 1
    p16, p50, p84 = np.percentile(v, [16, 50, 84])
    return float(p50), float((p84 - p16) / 2.0), float(p16), float(p84), int(v.size)


def _check_input(df: pd.DataFrame) -> None:
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(None, "abundance input", f"lacks columns {missing}",
                         f"give {', '.join(INPUT_COLUMNS)} (+ optional mc)")
    if "mc" not in df.columns and df.duplicated(_KEYS).any():
        raise InputError(None, "abundance input", "several rows per id/component/region but no 'mc' column",
                         "add the realisation index")


def abundance_table(realisations: pd.DataFrame, methods=METHODS) -> pd.DataFrame:
    """log(N/O) per component and region, for each method.

    Parameters
    ----------
    realisations : pandas.DataFrame
        Columns ``id, component, region, N2O2, R23`` (linear) and optionally
        ``mc``.
    methods : sequence of str
        Subset of :data:`METHODS`.

    Returns
    -------
    pandas.DataFrame
        :data:`ABUNDANCE_COLUMNS`, one row per id x component x region x method.
    """
    _check_input(realisations)
    rows = []
    for key, grp in realisations.groupby(_KEYS, sort=True):
        for method in methods:
            values = log_no(method, grp["N2O2"].to_numpy(float), grp["R23"].to_numpy(float))
            med, err, p16, p84, n = _summary(values)
            rows.append(dict(zip(_KEYS, key), method=method, log_no=med, log_no_err=err, log_no_p16=p16, log_no_p84=p84, n_mc=n))
    return pd.DataFrame(rows, columns=list(ABUNDANCE_COLUMNS))


def realisation_log_no(realisations: pd.DataFrame, methods=METHODS) -> pd.DataFrame:
    """log(N/O) of every input row (long format: input keys, ``mc``, ``method``, ``log_no``)."""
    _check_input(realisations)
    df = realisations.copy()
    if "mc" not in df.columns:
        df["mc"] = 0
    parts = []
    for method in methods:
        part = df[_KEYS + ["mc"]].copy()
        part["method"] = method
        part["log_no"] = log_no(method, df["N2O2"].to_numpy(float), df["R23"].to_numpy(float))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def delta_table(realisations: pd.DataFrame, methods=METHODS, ism: str = "ISM", cgm: str = "CGM") -> pd.DataFrame:
    """Delta log(N/O) = CGM - ISM per component and for the sample.

    Parameters
    ----------
    realisations : pandas.DataFrame
        As for :func:`abundance_table`; ``region`` holds ``ism`` / ``cgm``.
    methods : sequence of str
        Subset of :data:`METHODS`.
    ism, cgm : str
        Region labels.

    Returns
    -------
    pandas.DataFrame
        :data:`DELTA_COLUMNS`: per id x component x method (``n`` = number
        of realisations used), then one ``SAMPLE`` row per method (``n`` =
        number of components).
    """
    long = realisation_log_no(realisations, methods)
    idx = ["id", "component", "method", "mc"]
    # groupby/unstack keeps only the (id, component) pairs present (NaN values kept)
    wide = long.groupby(idx + ["region"], sort=True, dropna=False)["log_no"].first().unstack("region")
    for region in (ism, cgm):
        if region not in wide.columns:
            wide[region] = np.nan
    per_mc = (wide[cgm] - wide[ism]).rename("delta").reset_index()
    rows = []
    for (gid, comp, method), grp in per_mc.groupby(["id", "component", "method"], sort=True):
        med, err, p16, p84, n = _summary(grp["delta"].to_numpy())
        rows.append(dict(id=gid, component=comp, method=method, delta_log_no=med, delta_err=err, delta_p16=p16, delta_p84=p84, n=n))
    out = pd.DataFrame(rows, columns=list(DELTA_COLUMNS))
    sample = [_sample_row(out, per_mc, method) for method in methods]
    return pd.concat([out, pd.DataFrame(sample, columns=list(DELTA_COLUMNS))], ignore_index=True)


def _sample_row(per_component: pd.DataFrame, per_mc: pd.DataFrame, method: str) -> dict:
    d = per_component.loc[per_component["method"] == method, "delta_log_no"].to_numpy(float)
    d = d[np.isfinite(d)]
    med = float(np.median(d)) if d.size else np.nan
    err = SIGMA_MED_FACTOR * float(np.std(d, ddof=1)) / np.sqrt(d.size) if d.size >= 2 else np.nan
    mc = per_mc[per_mc["method"] == method]
    medians = mc.groupby("mc")["delta"].median()
    medians = medians[np.isfinite(medians)]
    p16, p84 = (np.percentile(medians, [16, 84]) if medians.size >= 2 else (np.nan, np.nan))
    return dict(id=SAMPLE_ID, component="all", method=method, delta_log_no=med, delta_err=err, delta_p16=float(p16), delta_p84=float(p84), n=int(d.size))


def abundance_input_from_ratios(ratios: pd.DataFrame) -> pd.DataFrame:
    """Input of :func:`abundance_table` from the ratio table of :mod:`ismcgm.ratios`.

    Takes ``log_value`` of N2O2 and R23 (rows with ``limit != 'none'`` become
    NaN: no N/O from limits) and returns ``id, component, region, N2O2, R23``
    (linear), plus ``mc`` if the ratio table has it.
    """
    keys = _KEYS + (["mc"] if "mc" in ratios.columns else [])
    sel = ratios[ratios["ratio"].isin(["N2O2", "R23"])].copy()
    value = 10.0 ** sel["log_value"].astype(float)
    if "limit" in sel.columns:
        value = value.where(sel["limit"] == "none")
    sel["value"] = value
    wide = sel.pivot_table(index=keys, columns="ratio", values="value", aggfunc="first", dropna=False).reset_index()
    for col in ("N2O2", "R23"):
        if col not in wide.columns:
            wide[col] = np.nan
    wide.columns.name = None
    return wide[keys + ["N2O2", "R23"]]


# ---------------------------------------------------------------------------
# abundance input
# ---------------------------------------------------------------------------

#: Lines that must be detected for each ratio (tied lines follow their reference).
ABUNDANCE_RATIO_LINES = {
    "N2O2": ("NII6583", "OII3728"),
    "R23": ("OIII5007", "OII3728", "HB"),
}


def preferred_realisations(real: pd.DataFrame) -> pd.DataFrame:
    """One row per component, region, line and realisation: G395M/G395H over G235M (:func:`ismcgm.ratios.preferred_grating`)."""
    return preferred_grating(real, keys=_KEYS + ["line", "realisation"])


def detections(real: pd.DataFrame, detect_snr: float) -> pd.Series:
    """Detected (median/std of the observed MC fluxes >= ``detect_snr``) per id, component, region, line."""
    pref = preferred_realisations(real)
    return pref.groupby(_KEYS + ["line"], sort=True)["flux"].apply(
        lambda f: bool(mc.summarise(f.to_numpy(float), detect_snr).detected)
    )


def abundance_input_from_realisations(real: pd.DataFrame, detect_snr: float | None = 3.0) -> pd.DataFrame:
    """Per-realisation dust-corrected N2O2 and R23 (input of :func:`abundance_table`).

    Parameters
    ----------
    real : pandas.DataFrame
        ``realisations.parquet`` of the line-fitting stage: ``id, component,
        region, grating, line, realisation, flux, flux_dustcorr`` (one row per
        realisation).  A line measured in two gratings is taken from G395M
        (or G395H), not G235M (:data:`ismcgm.ratios.GRATING_PREFERENCE`).
    detect_snr : float or None
        A ratio is NaN for every realisation of a component and region where
        one of its lines (:data:`ABUNDANCE_RATIO_LINES`) is not detected
        (median/std of the observed fluxes < ``detect_snr``, as in the line
        table): no N/O from limits.  None keeps all realisations.

    Returns
    -------
    pandas.DataFrame
        ``id, component, region, mc, N2O2, R23`` (linear), ``mc`` = realisation
        index.  N2O2 = [N II]6583/[O II]3728 and R23 = ([O III]4959 +
        [O III]5007 + [O II]3728)/Hbeta from the dust-corrected fluxes of the
        same realisation; NaN where a line is missing.
    """
    need = set(_KEYS + ["grating", "line", "realisation", "flux", "flux_dustcorr"])
    missing = sorted(need - set(real.columns))
    if missing:
        raise InputError(None, "realisations table", f"lacks columns {missing}", "rerun the mc_gather rule")
    pref = preferred_realisations(real)
    wide = pref.set_index(_KEYS + ["realisation", "line"])["flux_dustcorr"].unstack("line").sort_index()
    out = wide.index.to_frame(index=False).rename(columns={"realisation": "mc"})
    det = detections(real, detect_snr) if detect_snr is not None else None
    for ratio in ("N2O2", "R23"):
        d = RATIO_DEFINITIONS[ratio]
        cols = list(d.numerator) + list(d.denominator)
        if not set(cols) <= set(wide.columns):
            out[ratio] = np.nan
            continue
        num = wide[list(d.numerator)].sum(axis=1, min_count=len(d.numerator)).to_numpy(float)
        den = wide[list(d.denominator)].sum(axis=1, min_count=len(d.denominator)).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den != 0, num / den, np.nan)
        if det is not None:
            ok = np.ones(len(out), dtype=bool)
            for line in ABUNDANCE_RATIO_LINES[ratio]:
                idx = pd.MultiIndex.from_frame(out[_KEYS].assign(line=line))
                ok &= det.reindex(idx).fillna(False).to_numpy(bool)
            value = np.where(ok, value, np.nan)
        out[ratio] = value
    return out[_KEYS + ["mc", "N2O2", "R23"]]


def abundance_delta_table(inp: pd.DataFrame) -> pd.DataFrame:
    """Delta log(N/O) CGM - ISM per component and for the sample (:func:`delta_table`)."""
    return delta_table(inp)
