"""Fig. 4: distributions of d11, the distance to the 1:1 line (paper Fig. 4).

Per ratio: density histograms of the observed d11 (grey, pairs without
limits), of the observed points redrawn within their errors (light blue,
all MC iterations pooled; for visualisation only) and of the null
hypothesis (light red, points on the 1:1 line redrawn within their errors).
Above them, for each distribution, a circle at the median with a bar from
the 16th to the 84th percentile and a box of +-1 sigma_med around the median,
``sigma_med = 1.235 std / sqrt(N)`` with N the number of pairs (so the
boxes of the pooled MC and null distributions are comparable with the data
box).  Each panel states the KS p-value (data vs null) and f_rej,MC from the
statistics table.  The draws are the table of :func:`ismcgm.stats.d11_draws_table`
(``d11_draws.csv``, the draws behind the statistics table) and the
summaries come from :func:`ismcgm.stats.d11_summary`: this module only draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch, Rectangle

from ismcgm.plots.fig3_ratios import FIG_RATIOS, RATIO_LABELS, panel_grid, panel_ratios, save_figure
from ismcgm.stats import d11_summary

#: Colours and labels of the three distributions.
DISTRIBUTIONS = {
    "data": ("0.55", "data"),
    "mc": ("#7fb8e6", "MC of data"),
    "null": ("#f08f8f", "null (1:1)"),
}

#: Number of histogram bins per panel.
N_BINS = 20


def _hist_edges(groups: dict) -> np.ndarray:
    """Bin edges covering every data point and the central 99 % of the MC and null draws."""
    ranges = []
    for kind, v in groups.items():
        v = v[np.isfinite(v)]
        if v.size:
            ranges.append((v.min(), v.max()) if kind == "data" else tuple(np.percentile(v, [0.5, 99.5])))
    if not ranges:
        return np.linspace(-0.5, 0.5, N_BINS + 1)
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if hi - lo < 1e-3:
        lo, hi = lo - 0.1, hi + 0.1
    pad = 0.05 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, N_BINS + 1)


def _plot_summary(ax, summary: dict, y: float, height: float, colour: str) -> None:
    """Median circle, 16-84 bar and sigma_med box at height ``y``."""
    if not np.isfinite(summary["median"]):
        return
    med = summary["median"]
    ax.errorbar(
        med,
        y,
        xerr=[[med - summary["p16"]], [summary["p84"] - med]],
        fmt="o",
        color=colour,
        mec="k",
        ms=5,
        capsize=2,
        zorder=4,
    )
    if np.isfinite(summary["sigma_med"]):
        s = summary["sigma_med"]
        ax.add_patch(
            Rectangle((med - s, y - height / 2), 2 * s, height, fill=False, ec="k", lw=1.0, zorder=5)
        )


def _panel(ax, name: str, draws: pd.DataFrame, stats_row) -> None:
    groups = {kind: draws.loc[draws["kind"] == kind, "d11"].to_numpy(float) for kind in DISTRIBUTIONS}
    n_points = groups["data"].size
    if n_points == 0:
        ax.text(0.5, 0.5, "no pairs without limits", transform=ax.transAxes, ha="center")
    edges = _hist_edges(groups)
    top = 0.0
    for kind, (colour, _) in DISTRIBUTIONS.items():
        if groups[kind].size:
            heights, _, _ = ax.hist(
                np.clip(groups[kind], edges[0], edges[-1]),
                bins=edges,
                density=True,
                color=colour,
                alpha=0.55 if kind != "data" else 0.8,
                histtype="stepfilled",
                zorder=2 if kind == "data" else 1,
            )
            top = max(top, float(np.max(heights)))
    top = top or 1.0
    step = 0.12 * top
    for i, (kind, (colour, _)) in enumerate(DISTRIBUTIONS.items()):
        _plot_summary(ax, d11_summary(groups[kind], n_points), top * 1.1 + i * step, 0.7 * step, colour)
    ax.axvline(0.0, color="green", ls="--", lw=1.0)
    ax.set_ylim(0, top * 1.1 + 6.0 * step)  # room for the statistics text above the summaries
    ax.set_xlabel(rf"$d_{{11}}$ ({RATIO_LABELS.get(name, name)}) [dex]")
    ax.set_ylabel("density")
    ax.text(0.03, 0.97, _stats_text(stats_row, n_points), transform=ax.transAxes, ha="left", va="top", fontsize=8)


def _stats_text(stats_row, n_points: int) -> str:
    if stats_row is None or not np.isfinite(stats_row["ks_p"]):
        return f"N = {n_points}"
    return (
        f"N = {n_points}\n"
        + rf"$p_{{\rm KS}}$ = {stats_row['ks_p']:.2g}"
        + "\n"
        + rf"$f_{{\rm rej,MC}}$ = {100 * stats_row['f_rej_mc']:.0f}%"
    )


def plot_fig4(ratios_df, stats_df, d11_draws, pdf, png, synthetic=False, ratios=FIG_RATIOS) -> None:
    """d11 histograms of data, MC and null per ratio (paper Fig. 4).

    Parameters
    ----------
    ratios_df, stats_df, d11_draws : pandas.DataFrame
        The tables ``ratios.csv`` (:func:`ismcgm.ratios.compute_ratios`),
        ``statistics.csv`` (:func:`ismcgm.stats.statistics_table`: KS p,
        f_rej) and ``d11_draws.csv`` (:func:`ismcgm.stats.d11_draws_table`,
        for the seed of ``stats_df``); nothing is recomputed here.
    pdf, png : str or path-like
        Output files.
    synthetic : bool
        Label the figure "SYNTHETIC MOCK DATA".
    ratios : sequence of str
        Ratios to draw, default the paper's six.
    """
    names = panel_ratios(ratios_df, ratios) or list(ratios[:1])
    fig, axes = panel_grid(len(names))
    stats_by_ratio = stats_df.set_index("ratio") if len(stats_df) else pd.DataFrame()
    for ax, name in zip(axes, names):
        row = stats_by_ratio.loc[name] if name in stats_by_ratio.index else None
        _panel(ax, name, d11_draws[d11_draws["ratio"] == name], row)
    handles = [Patch(color=c, label=lab) for c, lab in DISTRIBUTIONS.values()]
    handles.append(Patch(fill=False, ec="k", label=r"$\pm1\sigma_{\rm med}$"))
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, 0.965), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    save_figure(fig, pdf, png, synthetic)
