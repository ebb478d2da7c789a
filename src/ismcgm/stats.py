"""ISM versus CGM statistics of the line ratios (SPEC section 8, paper Sect. 4.1).

Every statistic is computed per ratio over all galaxy components (merger
components count separately) from *pairs*: the ISM and CGM value of the same
component.  A pair is used only when both regions have a measured value
(``limit == 'none'``) with a finite log error; low-S/N [N II] points are kept.

Tests
-----
Kendall tau_b
    ``scipy.stats.kendalltau(log_ism, log_cgm, variant='b')`` on the data
    (``tau_b``, ``p_tau``).  ``f_dep_mc`` is the fraction of ``n_mc`` Monte
    Carlo draws with p < 0.05; in each draw every point is redrawn from
    independent Gaussians of width ``log_err`` around its log ISM and log
    CGM value.  ``log_err`` is the robust error of the ratio table (half the
    16th-84th percentile range of the ratio over the spectral Monte Carlo
    realisations, :mod:`ismcgm.ratios`), so the draws follow the bulk of
    each point's distribution: no draw inherits the heavy tail of a weak
    line (every d11 draw is finite).  A Gaussian rather than a resampling
    of the realisations themselves, because a realisation may hold an
    infinite log ratio (a line <= 0 in that realisation), which has a rank
    but no place in a KS statistic.
d11 and KS
    ``d11 = (log CGM - log ISM) / sqrt(2)``, the signed perpendicular
    distance to the 1:1 line.  Null hypothesis: each point is moved to its
    orthogonal projection onto the 1:1 line, ``((x + y)/2, (x + y)/2)``, and
    redrawn ``n_null`` (default ``n_mc``) times within its own ISM and CGM
    errors; d11 of those draws is the null distribution (note that the
    null d11 does not depend on where on the line the point sits, only on
    its errors).  ``ks_p`` is ``scipy.stats.ks_2samp(d11_data, d11_null)``.
    ``f_rej_mc`` is the fraction of ``n_mc`` draws in which the redrawn
    observed d11 (as for Kendall) differs from a freshly drawn null with
    p < 0.05.
Shift
    ``Delta = log CGM - log ISM``; ``shift_median`` is the median of the data
    Delta, ``shift_p16`` / ``shift_p84`` the 16th / 84th percentiles of the
    medians of the ``n_mc`` Monte Carlo draws, and ``sigma_med = 1.235 *
    std(Delta, ddof=1) / sqrt(N)`` (paper footnote 51).
Mass trend
    The same shift (median and sigma_med, no Monte Carlo) in bins of log M*.
    The default edges :data:`DEFAULT_MASS_EDGES` = (9.5, 10.0, 10.5, 11.0)
    give the paper's three 0.5-dex bins; the outermost bins are open
    (log M* < 10.0 falls in the first bin, >= 10.5 in the last), so no
    component is dropped for lying just outside the nominal range.

Small samples
-------------
Kendall and KS statistics need at least :data:`MIN_POINTS` (= 3) pairs, the
shift median one pair and ``sigma_med`` two; below that the value is NaN.

Random numbers
--------------
Every function takes a :class:`numpy.random.Generator` supplied by the
caller.  The table functions derive one per (seed, ratio, test) with
:func:`make_rng`, from :class:`numpy.random.SeedSequence` and a stable
SHA-256 hash of the names, so results do not depend on the order or the set
of ratios processed, and :func:`d11_draws_table` reproduces exactly the
draws behind ``ks_p`` / ``f_rej_mc`` of :func:`statistics_table`.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from ismcgm.ratios import RATIOS
from ismcgm.seeding import rng

#: Default number of Monte Carlo draws.
N_MC = 100

#: Significance level for f_dep_mc and f_rej_mc.
ALPHA = 0.05

#: Minimum number of pairs for the Kendall and KS tests.
MIN_POINTS = 3

#: Factor of the standard error on the median (paper footnote 51).
SIGMA_MED_FACTOR = 1.235

#: Default log M* bin edges (three 0.5-dex bins, outer bins open).
DEFAULT_MASS_EDGES = (9.5, 10.0, 10.5, 11.0)

#: Columns of :func:`statistics_table`.
STATS_COLUMNS = (
    "ratio",
    "n",
    "tau_b",
    "p_tau",
    "f_dep_mc",
    "ks_p",
    "f_rej_mc",
    "shift_median",
    "shift_p16",
    "shift_p84",
    "sigma_med",
)

#: Columns of :func:`mass_trend_table`.
MASS_TREND_COLUMNS = ("ratio", "mass_bin", "n", "shift_median", "sigma_med")

#: Columns of :func:`d11_draws_table`; ``kind`` is ``data``, ``mc`` or ``null``.
D11_DRAW_COLUMNS = ("ratio", "kind", "d11")

#: Columns of :func:`pair_regions`.
PAIR_COLUMNS = (
    "id",
    "component",
    "ratio",
    "logmstar",
    "merger",
    "nii_lowsn",
    "log_ism",
    "err_ism",
    "limit_ism",
    "log_cgm",
    "err_cgm",
    "limit_cgm",
    "usable",
)


# ---------------------------------------------------------------------------
# random numbers
# ---------------------------------------------------------------------------
def make_rng(seed: int, ratio: str, purpose: str = "") -> np.random.Generator:
    """Random generator for one ratio (and optionally one test).

    Parameters
    ----------
    seed : int
        The workflow seed (non-negative).
    ratio : str
        Ratio name.
    purpose : str, optional
        Name of the test (``kendall``, ``d11``, ``shift``) so that each test
        has its own independent stream.

    Returns
    -------
    numpy.random.Generator
    """
    return rng(seed, ratio, *([purpose] if purpose else []))


# ---------------------------------------------------------------------------
# pairing ISM and CGM
# ---------------------------------------------------------------------------
def pair_regions(ratios_df: pd.DataFrame) -> pd.DataFrame:
    """ISM and CGM values of each component side by side.

    Parameters
    ----------
    ratios_df : pandas.DataFrame
        Output of :func:`ismcgm.ratios.compute_ratios`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PAIR_COLUMNS`, one row per component x ratio.
        A region absent from the input counts as ``undefined``;
        ``nii_lowsn`` is True if either region is flagged; ``usable`` marks
        pairs entering the statistics (both limits ``none``, finite values
        and errors).
    """
    keys = ["id", "component", "ratio"]
    cols = ["log_value", "log_err", "limit"]

    def region(name, suffix):
        part = ratios_df[ratios_df["region"] == name]
        return part[keys + cols].rename(columns={c: f"{c}_{suffix}" for c in cols})

    pairs = region("ISM", "ism").merge(region("CGM", "cgm"), on=keys, how="outer")
    pairs = pairs.rename(
        columns={
            "log_value_ism": "log_ism",
            "log_err_ism": "err_ism",
            "log_value_cgm": "log_cgm",
            "log_err_cgm": "err_cgm",
        }
    )
    for col in ("limit_ism", "limit_cgm"):
        pairs[col] = pairs[col].fillna("undefined")
    info = ratios_df.groupby(keys, sort=False).agg(
        logmstar=("logmstar", "first"), merger=("merger", "any"), nii_lowsn=("nii_lowsn", "any")
    )
    pairs = pairs.merge(info.reset_index(), on=keys, how="left")
    finite = np.isfinite(pairs[["log_ism", "err_ism", "log_cgm", "err_cgm"]].to_numpy(float)).all(axis=1)
    pairs["usable"] = (pairs["limit_ism"] == "none") & (pairs["limit_cgm"] == "none") & finite
    return pairs.loc[:, list(PAIR_COLUMNS)].reset_index(drop=True)


def usable_pairs(ratios_df: pd.DataFrame, ratio: str) -> pd.DataFrame:
    """The pairs of one ratio that enter the statistics (see :func:`pair_regions`)."""
    pairs = pair_regions(ratios_df[ratios_df["ratio"] == ratio])
    return pairs[pairs["usable"]].reset_index(drop=True)


def _arrays(pairs: pd.DataFrame):
    return tuple(pairs[c].to_numpy(float) for c in ("log_ism", "err_ism", "log_cgm", "err_cgm"))


# ---------------------------------------------------------------------------
# Monte Carlo draws
# ---------------------------------------------------------------------------
def draw_points(log_ism, err_ism, log_cgm, err_cgm, rng, n_draws):
    """Redraw every point from independent Gaussians of its log errors.

    Parameters
    ----------
    log_ism, err_ism, log_cgm, err_cgm : array_like, shape (N,)
        Log values and 1-sigma log errors.
    rng : numpy.random.Generator
        Random generator.
    n_draws : int
        Number of draws.

    Returns
    -------
    x, y : numpy.ndarray, shape (n_draws, N)
        Redrawn log ISM and log CGM values.
    """
    x, ex, y, ey = (np.asarray(a, dtype=float) for a in (log_ism, err_ism, log_cgm, err_cgm))
    size = (int(n_draws), x.size)
    return x + ex * rng.standard_normal(size), y + ey * rng.standard_normal(size)


def _quiet(func, *args, **kwargs):
    """Call a scipy test, silencing its warnings for constant / tiny inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------
# Kendall tau_b
# ---------------------------------------------------------------------------
class KendallResult(NamedTuple):
    """Kendall tau_b of the data and the MC fraction of significant draws."""

    n: int
    tau_b: float
    p_tau: float
    f_dep_mc: float


def kendall_tau_b(x, y) -> tuple[float, float]:
    """``scipy.stats.kendalltau(x, y, variant='b')`` as (tau_b, p); NaN for N < 3."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < MIN_POINTS:
        return np.nan, np.nan
    from scipy.stats import kendalltau  # here: scipy.stats costs ~0.6 s to import, and the figures need not pay it

    res = _quiet(kendalltau, x, y, variant="b")
    return float(res.statistic), float(res.pvalue)


def kendall_test(log_ism, err_ism, log_cgm, err_cgm, rng, n_mc=N_MC, alpha=ALPHA) -> KendallResult:
    """Kendall tau_b of log ISM vs log CGM and its Monte Carlo dependence fraction.

    Parameters
    ----------
    log_ism, err_ism, log_cgm, err_cgm : array_like, shape (N,)
        Log values and 1-sigma log errors of the usable pairs.
    rng : numpy.random.Generator
        Random generator.
    n_mc : int
        Number of Monte Carlo draws.
    alpha : float
        Significance level.

    Returns
    -------
    KendallResult
        ``tau_b`` and ``p_tau`` of the data, ``f_dep_mc`` = fraction of
        draws with p < ``alpha`` (NaN throughout for N < 3).
    """
    n = int(np.size(log_ism))
    tau, p = kendall_tau_b(log_ism, log_cgm)
    if n < MIN_POINTS:
        return KendallResult(n, np.nan, np.nan, np.nan)
    xs, ys = draw_points(log_ism, err_ism, log_cgm, err_cgm, rng, n_mc)
    pvals = np.array([kendall_tau_b(x, y)[1] for x, y in zip(xs, ys)])
    return KendallResult(n, tau, p, float(np.mean(pvals < alpha)))


# ---------------------------------------------------------------------------
# d11 and the KS test
# ---------------------------------------------------------------------------
class D11Result(NamedTuple):
    """KS test of d11 against the 1:1 null, with the draws behind it.

    ``data`` has shape (N,), ``mc`` (n_mc, N) (redrawn observed d11, one row
    per MC iteration) and ``null`` (n_null, N) (the null used for ``ks_p``).
    """

    n: int
    ks_p: float
    f_rej_mc: float
    data: np.ndarray
    mc: np.ndarray
    null: np.ndarray


def d11(log_ism, log_cgm) -> np.ndarray:
    """Signed perpendicular distance to the 1:1 line, ``(log CGM - log ISM)/sqrt(2)``."""
    return (np.asarray(log_cgm, dtype=float) - np.asarray(log_ism, dtype=float)) / np.sqrt(2.0)


def project_to_one_to_one(log_ism, log_cgm) -> np.ndarray:
    """Orthogonal projection of each point onto the 1:1 line (its common coordinate)."""
    return 0.5 * (np.asarray(log_ism, dtype=float) + np.asarray(log_cgm, dtype=float))


def null_d11(log_ism, err_ism, log_cgm, err_cgm, rng, n_draws) -> np.ndarray:
    """d11 of the null hypothesis: points on the 1:1 line redrawn within their errors.

    Returns
    -------
    numpy.ndarray, shape (n_draws, N)
    """
    centre = project_to_one_to_one(log_ism, log_cgm)
    x, y = draw_points(centre, err_ism, centre, err_cgm, rng, n_draws)
    return d11(x, y)


def mc_d11(log_ism, err_ism, log_cgm, err_cgm, rng, n_draws) -> np.ndarray:
    """d11 of the observed points redrawn within their errors, shape (n_draws, N)."""
    x, y = draw_points(log_ism, err_ism, log_cgm, err_cgm, rng, n_draws)
    return d11(x, y)


def ks_pvalue(a, b) -> float:
    """Two-sample KS p-value (``scipy.stats.ks_2samp``), NaN for empty input."""
    a, b = np.ravel(a), np.ravel(b)
    if a.size == 0 or b.size == 0:
        return np.nan
    from scipy.stats import ks_2samp  # here: see kendall_tau_b

    return float(_quiet(ks_2samp, a, b).pvalue)


def d11_test(log_ism, err_ism, log_cgm, err_cgm, rng, n_mc=N_MC, n_null=None, alpha=ALPHA) -> D11Result:
    """KS test of the observed d11 against the 1:1-line null (see module doc).

    Parameters
    ----------
    log_ism, err_ism, log_cgm, err_cgm : array_like, shape (N,)
        Log values and 1-sigma log errors of the usable pairs.
    rng : numpy.random.Generator
        Random generator.  Draw order: the null for ``ks_p``, then the
        ``n_mc`` observed redraws, then the ``n_mc`` fresh nulls.
    n_mc : int
        Number of Monte Carlo iterations for ``f_rej_mc``.
    n_null : int, optional
        Number of null draws per point (default ``n_mc``).
    alpha : float
        Significance level.

    Returns
    -------
    D11Result
        For N < 3 ``ks_p`` and ``f_rej_mc`` are NaN and the draws are empty.
    """
    n_null = n_mc if n_null is None else n_null
    data = d11(log_ism, log_cgm)
    n = data.size
    if n < MIN_POINTS:
        empty = np.empty((0, n))
        return D11Result(n, np.nan, np.nan, data, empty, empty)
    args = (log_ism, err_ism, log_cgm, err_cgm, rng)
    null = null_d11(*args, n_null)
    ks_p = ks_pvalue(data, null)
    mc = mc_d11(*args, n_mc)
    pvals = np.array([ks_pvalue(mc[i], null_d11(*args, n_null)) for i in range(n_mc)])
    return D11Result(n, ks_p, float(np.mean(pvals < alpha)), data, mc, null)


# ---------------------------------------------------------------------------
# shift CGM - ISM
# ---------------------------------------------------------------------------
class ShiftResult(NamedTuple):
    """Median CGM - ISM shift, MC percentiles of the median, and sigma_med."""

    n: int
    shift_median: float
    shift_p16: float
    shift_p84: float
    sigma_med: float


def d11_summary(values, n_points: int) -> dict:
    """Median, 16th/84th percentiles and sigma_med of one d11 distribution (Fig. 4).

    Parameters
    ----------
    values : array_like
        d11 values (pooled over draws for MC / null).
    n_points : int
        Number of pairs N used in ``sigma_med = 1.235 std / sqrt(N)``.

    Returns
    -------
    dict
        ``median, p16, p84, sigma_med`` (NaN when empty).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0 or n_points < 1:
        return dict.fromkeys(("median", "p16", "p84", "sigma_med"), np.nan)
    p16, med, p84 = np.percentile(values, [16.0, 50.0, 84.0])
    ddof = 1 if values.size > 1 else 0
    sigma = SIGMA_MED_FACTOR * np.std(values, ddof=ddof) / np.sqrt(n_points)
    return {"median": med, "p16": p16, "p84": p84, "sigma_med": sigma}


def sigma_median(delta) -> float:
    """Standard error of the median, ``1.235 std(delta, ddof=1) / sqrt(N)`` (NaN for N < 2)."""
    delta = np.asarray(delta, dtype=float)
    if delta.size < 2:
        return np.nan
    return float(SIGMA_MED_FACTOR * np.std(delta, ddof=1) / np.sqrt(delta.size))


def shift_stats(log_ism, err_ism, log_cgm, err_cgm, rng, n_mc=N_MC) -> ShiftResult:
    """Shift Delta = log CGM - log ISM of the usable pairs (see module doc).

    Parameters
    ----------
    log_ism, err_ism, log_cgm, err_cgm, rng
        As for :func:`draw_points`.
    n_mc : int
        Number of Monte Carlo draws.

    Returns
    -------
    ShiftResult
    """
    delta = np.asarray(log_cgm, dtype=float) - np.asarray(log_ism, dtype=float)
    n = delta.size
    if n == 0:
        return ShiftResult(0, np.nan, np.nan, np.nan, np.nan)
    xs, ys = draw_points(log_ism, err_ism, log_cgm, err_cgm, rng, n_mc)
    p16, p84 = np.percentile(np.median(ys - xs, axis=1), [16.0, 84.0])
    return ShiftResult(n, float(np.median(delta)), float(p16), float(p84), sigma_median(delta))


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------
def ratio_order(ratios_df: pd.DataFrame) -> list[str]:
    """Ratios present in a table, in :data:`ismcgm.ratios.RATIOS` order (others after)."""
    present = list(pd.unique(ratios_df["ratio"]))
    return [r for r in RATIOS if r in present] + [r for r in present if r not in RATIOS]


def ratio_statistics(pairs: pd.DataFrame, ratio: str, seed: int, n_mc: int = N_MC) -> dict:
    """All statistics of one ratio from its usable pairs (one row of :func:`statistics_table`)."""
    arrays = _arrays(pairs)
    kendall = kendall_test(*arrays, make_rng(seed, ratio, "kendall"), n_mc)
    ks = d11_test(*arrays, make_rng(seed, ratio, "d11"), n_mc)
    shift = shift_stats(*arrays, make_rng(seed, ratio, "shift"), n_mc)
    return {
        "ratio": ratio,
        "n": len(pairs),
        "tau_b": kendall.tau_b,
        "p_tau": kendall.p_tau,
        "f_dep_mc": kendall.f_dep_mc,
        "ks_p": ks.ks_p,
        "f_rej_mc": ks.f_rej_mc,
        "shift_median": shift.shift_median,
        "shift_p16": shift.shift_p16,
        "shift_p84": shift.shift_p84,
        "sigma_med": shift.sigma_med,
    }


def statistics_table(ratios_df: pd.DataFrame, seed: int, n_mc: int = N_MC) -> pd.DataFrame:
    """Kendall, KS and shift statistics of every ratio (SPEC section 8).

    Parameters
    ----------
    ratios_df : pandas.DataFrame
        Output of :func:`ismcgm.ratios.compute_ratios`.
    seed : int
        Workflow seed; each ratio and test gets its own stream
        (:func:`make_rng`).
    n_mc : int
        Number of Monte Carlo draws.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`STATS_COLUMNS`, one row per ratio present.
    """
    rows = [ratio_statistics(usable_pairs(ratios_df, r), r, seed, n_mc) for r in ratio_order(ratios_df)]
    table = pd.DataFrame(rows, columns=list(STATS_COLUMNS))
    table["n"] = table["n"].astype(int)
    return table


def d11_draws_table(ratios_df: pd.DataFrame, seed: int, n_mc: int = N_MC) -> pd.DataFrame:
    """The d11 distributions behind Fig. 4 (same draws as :func:`statistics_table`).

    Parameters
    ----------
    ratios_df, seed, n_mc
        As for :func:`statistics_table` (the same seed gives the same draws).

    Returns
    -------
    pandas.DataFrame
        Long table, columns :data:`D11_DRAW_COLUMNS`: ``kind`` is ``data``
        (observed d11), ``mc`` (observed points redrawn within their errors,
        all iterations) or ``null`` (the 1:1-line null used for ``ks_p``).
    """
    parts = []
    for ratio in ratio_order(ratios_df):
        res = d11_test(*_arrays(usable_pairs(ratios_df, ratio)), make_rng(seed, ratio, "d11"), n_mc)
        for kind, values in (("data", res.data), ("mc", res.mc), ("null", res.null)):
            values = np.ravel(values)
            parts.append(pd.DataFrame({"ratio": ratio, "kind": kind, "d11": values}))
    if not parts:
        return pd.DataFrame(columns=list(D11_DRAW_COLUMNS))
    return pd.concat(parts, ignore_index=True).loc[:, list(D11_DRAW_COLUMNS)]


#: Columns of :func:`headline_table` (the report's landing page).
HEADLINE_COLUMNS = ("ratio", "N", "CGM - ISM shift [dex]", "16-84 % of the MC median",
                    "f_rej,MC", "tau_b", "f_dep,MC")


def headline_table(stats_df: pd.DataFrame) -> pd.DataFrame:
    """The statistics a reader wants first, formatted as text (report landing page).

    One row per ratio: N, ``shift_median +- sigma_med``, the 16-84 % range
    of the Monte Carlo medians, f_rej,MC (KS on d11), tau_b and f_dep,MC.
    """
    def fmt(x, spec):
        return format(x, spec) if np.isfinite(x) else "--"

    rows = []
    for _, r in stats_df.iterrows():
        rows.append((
            r["ratio"], int(r["n"]),
            f"{fmt(r['shift_median'], '+.3f')} +- {fmt(r['sigma_med'], '.3f')}",
            f"{fmt(r['shift_p16'], '+.3f')} .. {fmt(r['shift_p84'], '+.3f')}",
            fmt(r["f_rej_mc"], ".2f"), fmt(r["tau_b"], "+.2f"), fmt(r["f_dep_mc"], ".2f"),
        ))
    return pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))


def mass_bin_labels(edges=DEFAULT_MASS_EDGES) -> list[str]:
    """Labels ``"lo-hi"`` of the mass bins defined by ``edges``."""
    return [f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(edges[:-1], edges[1:])]


def assign_mass_bins(logmstar, edges=DEFAULT_MASS_EDGES) -> pd.Categorical:
    """Mass-bin label of each log M* (outer bins open; NaN stays NaN).

    Parameters
    ----------
    logmstar : array_like
        log10 stellar masses.
    edges : sequence of float
        Increasing bin edges (at least two).

    Returns
    -------
    pandas.Categorical
        Labels from :func:`mass_bin_labels`.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"mass-bin edges must be increasing and at least two, got {edges}")
    open_edges = [-np.inf] + edges[1:-1] + [np.inf]
    return pd.cut(
        np.asarray(logmstar, dtype=float), open_edges, labels=mass_bin_labels(edges), right=False
    )


def mass_trend_table(ratios_df: pd.DataFrame, edges=DEFAULT_MASS_EDGES) -> pd.DataFrame:
    """CGM - ISM shift per ratio in bins of log M* (SPEC section 8, mass trend).

    Parameters
    ----------
    ratios_df : pandas.DataFrame
        Output of :func:`ismcgm.ratios.compute_ratios`.
    edges : sequence of float
        Mass-bin edges, default :data:`DEFAULT_MASS_EDGES` (outer bins open).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MASS_TREND_COLUMNS`; every ratio x bin is present
        (``n = 0`` and NaN for empty bins).
    """
    rows = []
    labels = mass_bin_labels(edges)
    for ratio in ratio_order(ratios_df):
        pairs = usable_pairs(ratios_df, ratio)
        bins = assign_mass_bins(pairs["logmstar"], edges)
        delta = (pairs["log_cgm"] - pairs["log_ism"]).to_numpy(float)
        for label in labels:
            d = delta[np.asarray(bins == label)]
            rows.append(
                {
                    "ratio": ratio,
                    "mass_bin": label,
                    "n": d.size,
                    "shift_median": float(np.median(d)) if d.size else np.nan,
                    "sigma_med": sigma_median(d),
                }
            )
    return pd.DataFrame(rows, columns=list(MASS_TREND_COLUMNS))
