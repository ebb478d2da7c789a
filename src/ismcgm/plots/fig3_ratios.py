"""Fig. 3: ISM versus CGM line ratios (paper Fig. 3, SPEC section 13).

One panel per ratio, log ISM on x and log CGM on y.  Points are coloured by
the three log M* bins (:data:`ismcgm.stats.DEFAULT_MASS_EDGES`, outer bins
open); mergers use a diamond with a blue (component ``a``) or red
(component ``b``) edge and their two components are linked by a thin line;
error bars are asymmetric, from the 16th to the 84th percentile of the ratio
over the Monte Carlo realisations (``log_p16``/``log_p84``; symmetric
``log_err`` for tables without them); limits are drawn as arrows of :data:`ARROW_DEX` dex (an ``upper`` limit points
to lower values, ``lower`` to higher, on the axis of the region that has the
limit); pairs with an ``undefined`` region are not drawn; N2 / N2O2 points
with low-S/N [N II]6583 are translucent.  The dashed green line is the 1:1
relation; each panel states tau_b and f_dep,MC from the statistics table.
Each panel's range covers the points and their 16-84 % bars (a bar is
counted up to :data:`MAX_BAR_DEX`, so one very uncertain point cannot
squeeze the others into a corner; its bar runs off the panel).

This module also holds the small helpers shared by the statistics figures
(:func:`save_figure`, :func:`add_synthetic_label`, :data:`RATIO_LABELS`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ismcgm.ratios import NII_RATIOS
from ismcgm.stats import DEFAULT_MASS_EDGES, assign_mass_bins, mass_bin_labels, pair_regions

#: Ratios shown in Figs. 3 and 4 of the paper, in panel order.
FIG_RATIOS = ("O3", "O2", "O32", "R23", "N2", "N2O2")

#: Axis labels of the ratios.
RATIO_LABELS = {
    "O3": "O3",
    "O2": "O2",
    "O32": "O32",
    "R23": "R23",
    "N2": "N2",
    "N2O2": "N2O2",
    "BALMER": r"H$\alpha$/H$\beta$",
    "CII_HA": r"[C II]/H$\alpha$",
}

#: Text of the label on figures made from the mock survey.
SYNTHETIC_LABEL = "SYNTHETIC MOCK DATA"

#: Length of the limit arrows [dex].
ARROW_DEX = 0.15

#: Longest error bar [dex] that widens a panel's range (longer bars are clipped by the axes).
MAX_BAR_DEX = 0.6

#: Opacity of low-S/N [N II] points.
LOWSN_ALPHA = 0.35

#: Edge colours of merger components (as in Fig. 1).
COMPONENT_EDGES = {"a": "tab:blue", "b": "tab:red"}

#: Colour map of the mass bins.
MASS_CMAP = "viridis"


def save_figure(fig, pdf, png, synthetic: bool = False, dpi: int = 150) -> None:
    """Label (if synthetic), save as PDF and PNG, and close a figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    pdf, png : str or path-like
        Output paths (parent folders are created).
    synthetic : bool
        Add the :data:`SYNTHETIC_LABEL` banner.
    dpi : int
        Resolution of the PNG.
    """
    if synthetic:
        add_synthetic_label(fig)
    for path in (pdf, png):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(pdf)
    if fig.get_layout_engine() is not None:  # the layout is done: keep it for the PNG instead of redoing it
        fig.set_layout_engine("none")
    fig.savefig(png, dpi=dpi)
    plt.close(fig)


def add_synthetic_label(fig) -> None:
    """Put a visible "SYNTHETIC MOCK DATA" banner across the top of a figure."""
    fig.text(
        0.5,
        0.995,
        SYNTHETIC_LABEL,
        ha="center",
        va="top",
        fontsize=14,
        fontweight="bold",
        color="crimson",
        bbox={"facecolor": "white", "edgecolor": "crimson", "alpha": 0.85},
        zorder=100,
    )


def panel_grid(n_panels: int, ncols: int = 3, size: float = 3.4):
    """A figure with ``n_panels`` axes in rows of ``ncols`` (extra axes hidden)."""
    ncols = max(1, min(ncols, n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, 0.95 * size * nrows + 0.9), squeeze=False)
    axes = axes.ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def panel_ratios(ratios_df: pd.DataFrame, ratios) -> list[str]:
    """Ratios to draw: ``ratios`` that occur in the table, in that order."""
    present = set(ratios_df["ratio"])
    return [r for r in ratios if r in present]


def mass_colours(edges=DEFAULT_MASS_EDGES) -> dict[str, tuple]:
    """Colour of each mass-bin label."""
    labels = mass_bin_labels(edges)
    cmap = plt.get_cmap(MASS_CMAP)
    return {lab: cmap(x) for lab, x in zip(labels, np.linspace(0.1, 0.85, len(labels)))}


def component_suffix(row) -> str:
    """Merger component letter (``a``/``b``) or ``""`` for a single galaxy."""
    comp, gid = str(row["component"]), str(row["id"])
    return comp[len(gid) + 1 :] if comp.startswith(gid + "_") else ""


def _arrow_step(limit: str) -> float:
    """Arrow length along one axis: towards lower values for upper limits."""
    return {"upper": -ARROW_DEX, "lower": ARROW_DEX}.get(limit, 0.0)


def _plot_arrows(ax, x, y, limit_ism, limit_cgm, colour, alpha):
    """Limit arrows of one point (x: ISM, y: CGM)."""
    style = {"arrowstyle": "-|>", "color": colour, "alpha": alpha, "lw": 1.2, "mutation_scale": 9}
    dx, dy = _arrow_step(limit_ism), _arrow_step(limit_cgm)
    if dx:
        ax.annotate("", xy=(x + dx, y), xytext=(x, y), arrowprops=style)
    if dy:
        ax.annotate("", xy=(x, y + dy), xytext=(x, y), arrowprops=style)


def _plot_point(ax, row, colour):
    """One ISM/CGM pair with error bars or limit arrows."""
    alpha = LOWSN_ALPHA if (row["nii_lowsn"] and row["ratio"] in NII_RATIOS) else 1.0
    suffix = component_suffix(row)
    marker = "D" if row["merger"] else "o"
    edge = COMPONENT_EDGES.get(suffix, "black")
    x, y = row["log_ism"], row["log_cgm"]
    xerr = _bar(row, "ism")
    yerr = _bar(row, "cgm")
    ax.errorbar(
        x,
        y,
        xerr=xerr,
        yerr=yerr,
        fmt=marker,
        ms=6,
        mfc=colour,
        mec=edge,
        mew=1.3 if suffix else 0.6,
        ecolor=colour,
        elinewidth=0.8,
        alpha=alpha,
        zorder=3,
    )
    _plot_arrows(ax, x, y, row["limit_ism"], row["limit_cgm"], colour, alpha)


def _bar(row, region: str):
    """Asymmetric error bar ``[[below], [above]]`` of one region (None for limits / no error)."""
    if row[f"limit_{region}"] != "none":
        return None
    lo, hi = row[f"lo_{region}"], row[f"hi_{region}"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(lo, 0.0)], [max(hi, 0.0)]]


def with_bars(pairs: pd.DataFrame, ratios_df: pd.DataFrame) -> pd.DataFrame:
    """Pairs with the lengths of their error bars below/above the value (``lo_*``, ``hi_*`` [dex]).

    From ``log_p16``/``log_p84`` of the ratio table when present (the
    Monte Carlo percentiles), else the symmetric ``log_err``.
    """
    keys = ["id", "component", "ratio"]
    out = pairs.copy()
    for region, suffix in (("ISM", "ism"), ("CGM", "cgm")):
        part = ratios_df[ratios_df["region"] == region]
        value = part["log_value"].to_numpy(float)
        if {"log_p16", "log_p84"} <= set(part.columns):
            lo, hi = value - part["log_p16"].to_numpy(float), part["log_p84"].to_numpy(float) - value
        else:
            lo = hi = part["log_err"].to_numpy(float)
        bars = part[keys].assign(**{f"lo_{suffix}": lo, f"hi_{suffix}": hi})
        out = out.merge(bars, on=keys, how="left")
    return out


def _link_mergers(ax, pairs):
    """Thin line between the two components of each merger."""
    for _, grp in pairs[pairs["merger"]].groupby("id"):
        if len(grp) == 2:
            ax.plot(grp["log_ism"], grp["log_cgm"], "-", color="0.5", lw=0.8, zorder=2)


def _extent(pairs, side: str) -> np.ndarray:
    """Bar lengths on one side (``lo``/``hi``), capped at MAX_BAR_DEX, at least the arrow length."""
    bars = pairs[[f"{side}_ism", f"{side}_cgm"]].to_numpy(float)
    return np.clip(np.nan_to_num(bars, nan=0.0), 0.0, MAX_BAR_DEX) + ARROW_DEX


def _one_to_one(ax, pairs):
    """Square axis range covering points, their 16-84 % bars and arrows, plus the 1:1 line."""
    values = pairs[["log_ism", "log_cgm"]].to_numpy(float)
    if values.size:
        lo = np.nanmin(values - _extent(pairs, "lo")) - 0.1
        hi = np.nanmax(values + _extent(pairs, "hi")) + 0.1
    else:
        lo, hi = -1.0, 1.0
    ax.plot([lo, hi], [lo, hi], "--", color="green", lw=1.0, zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


def _stats_text(ax, stats_row):
    if stats_row is None:
        return
    tau, fdep = stats_row["tau_b"], stats_row["f_dep_mc"]
    text = (
        rf"$\tau_b$ = {tau:.2f}" + "\n" + rf"$f_{{\rm dep,MC}}$ = {100 * fdep:.0f}%"
        if np.isfinite(tau) and np.isfinite(fdep)
        else rf"$\tau_b$: N = {int(stats_row['n'])} < 3"
    )
    ax.text(0.96, 0.04, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=8)


def _legend_handles(colours):
    handles = [Line2D([], [], ls="", marker="o", mfc=c, mec="k", label=rf"log M$_*$ {lab}") for lab, c in colours.items()]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="w", mec="k", label="single"),
        Line2D([], [], ls="", marker="D", mfc="w", mec=COMPONENT_EDGES["a"], label="merger a"),
        Line2D([], [], ls="", marker="D", mfc="w", mec=COMPONENT_EDGES["b"], label="merger b"),
        Line2D([], [], ls="", marker="o", mfc="0.5", mec="k", alpha=LOWSN_ALPHA, label="S/N [N II] < 5"),
        Line2D([], [], ls="--", color="green", label="1:1"),
    ]
    return handles


def plot_fig3(
    ratios_df: pd.DataFrame,
    stats_df: pd.DataFrame,
    pdf,
    png,
    synthetic: bool = False,
    ratios=FIG_RATIOS,
    mass_edges=DEFAULT_MASS_EDGES,
) -> None:
    """ISM versus CGM line ratios, one panel per ratio (paper Fig. 3).

    Parameters
    ----------
    ratios_df : pandas.DataFrame
        Output of :func:`ismcgm.ratios.compute_ratios`.
    stats_df : pandas.DataFrame
        Output of :func:`ismcgm.stats.statistics_table` (for tau_b, f_dep).
    pdf, png : str or path-like
        Output files.
    synthetic : bool
        Label the figure "SYNTHETIC MOCK DATA".
    ratios : sequence of str
        Ratios to draw (those absent from ``ratios_df`` are skipped);
        default the paper's six.
    mass_edges : sequence of float
        log M* bin edges for the colours.
    """
    names = panel_ratios(ratios_df, ratios) or list(ratios[:1])
    fig, axes = panel_grid(len(names))
    colours = mass_colours(mass_edges)
    pairs = pair_regions(ratios_df)
    drawable = (pairs["limit_ism"] != "undefined") & (pairs["limit_cgm"] != "undefined")
    pairs = pairs[drawable & np.isfinite(pairs["log_ism"]) & np.isfinite(pairs["log_cgm"])].copy()
    pairs = with_bars(pairs, ratios_df)
    pairs["mass_bin"] = assign_mass_bins(pairs["logmstar"], mass_edges)
    stats_by_ratio = stats_df.set_index("ratio") if len(stats_df) else pd.DataFrame()
    for ax, name in zip(axes, names):
        sub = pairs[pairs["ratio"] == name]
        _link_mergers(ax, sub)
        for _, row in sub.iterrows():
            _plot_point(ax, row, colours.get(row["mass_bin"], "0.6"))
        if sub.empty:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        _one_to_one(ax, sub)
        label = RATIO_LABELS.get(name, name)
        ax.set_xlabel(f"log {label} (ISM)")
        ax.set_ylabel(f"log {label} (CGM)")
        ax.set_aspect("equal", adjustable="box")
        _stats_text(ax, stats_by_ratio.loc[name] if name in stats_by_ratio.index else None)
    fig.legend(handles=_legend_handles(colours), loc="upper center", ncol=4, fontsize=8,
               bbox_to_anchor=(0.5, 0.965), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    save_figure(fig, pdf, png, synthetic)
