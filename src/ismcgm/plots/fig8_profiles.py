"""Figure 8 (issue 18): line ratios against radius, from the ISM out into the CGM.

One panel per ratio: every galaxy component's profile thin (points with a
value joined by a line; an annulus whose ratio is an upper or lower limit
drawn as a small open caret pointing down or up at the limit, SPEC 7;
undefined ones left out), the sample median profile bold with its bootstrap
16-84 band, and the two-region values as boxes at their radii -- the ISM
box from 0 to the sample's median ISM radius, the CGM box from there to the
median outer CGM radius (``RKPC`` and ``RCGMKPC`` of the masks), each box
spanning the 16-84 percentiles of the components' region values, with their
median as a line.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ismcgm.plots.fig3_ratios import RATIO_LABELS, save_figure
from ismcgm.resolved import PROFILE_RATIOS

#: Fewest components with a value for the median profile to be drawn in an annulus.
MIN_N_MEDIAN = 3

REGION_COLOURS = {"ISM": "tab:orange", "CGM": "tab:blue"}

#: Marker of an annulus whose ratio is a limit (value at the limit).
LIMIT_MARKERS = {"upper": "v", "lower": "^"}


def _region_box(ax, values, x0, x1, colour, label):
    v = values[np.isfinite(values)]
    if not v.size or not (np.isfinite(x0) and np.isfinite(x1)) or x1 <= x0:
        return
    lo, med, hi = np.percentile(v, [16, 50, 84])
    ax.add_patch(plt.Rectangle((x0, lo), x1 - x0, max(hi - lo, 0.01), facecolor=colour, alpha=0.2,
                               edgecolor=colour, lw=1.0, label=label, zorder=1))
    ax.plot([x0, x1], [med, med], color=colour, lw=1.5, zorder=2)


def plot_fig8(profiles: pd.DataFrame, median: pd.DataFrame, two_region: pd.DataFrame, annuli: pd.DataFrame,
              pdf, png, synthetic: bool = False, ratios=PROFILE_RATIOS, min_n: int = MIN_N_MEDIAN) -> None:
    """Draw Figure 8.

    Parameters
    ----------
    profiles : DataFrame
        ``radial_profiles.csv``.
    median : DataFrame
        ``radial_profile_median.csv``.
    two_region : DataFrame
        ``ratios.csv`` (ISM/CGM values).
    annuli : DataFrame
        ``radial_annuli.csv`` (``r_ism_kpc``, ``r_cgm_kpc`` per component).
    pdf, png : path
    synthetic : bool
        Add the SYNTHETIC MOCK DATA label.
    ratios : sequence of str
        One panel each (default the IFU ratios; the script adds ``CII_HA`` where the profiles have it).
    min_n : int
        The median is drawn in the annuli where at least this many components have a value.
    """
    ncol = 4 if len(ratios) < 8 else 3  # a free panel for the legend
    nrow = int(np.ceil((len(ratios) + 1) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow + (0.4 if synthetic else 0)),
                             squeeze=False, layout="constrained")
    if synthetic:  # room for the SYNTHETIC banner above the panels
        fig.get_layout_engine().set(rect=(0, 0, 1, 0.94))
    radii = annuli.drop_duplicates("component")
    r_ism, r_cgm = float(np.nanmedian(radii["r_ism_kpc"])), float(np.nanmedian(radii["r_cgm_kpc"]))
    # out to the last annulus with a value in any ratio (the outer ones may be limits only)
    valued = profiles[profiles["limit"] == "none"]
    r_max = max(float(valued["r_out_kpc"].max()) if len(valued) else 10.0, r_cgm if np.isfinite(r_cgm) else 0.0)
    for ax, ratio in zip(axes.flat, ratios):
        p = profiles[(profiles["ratio"] == ratio) & (profiles["limit"] == "none")]
        for _, g in p.groupby("component", sort=False):
            g = g.sort_values("r_mid_kpc")
            ax.plot(g["r_mid_kpc"], g["log_value"], "-", color="0.55", lw=0.6, alpha=0.7, zorder=3)
        for kind, marker in LIMIT_MARKERS.items():
            lim = profiles[(profiles["ratio"] == ratio) & (profiles["limit"] == kind)]
            ax.plot(lim["r_mid_kpc"], lim["log_value"], marker, mfc="none", mec="0.45", ms=4, mew=0.7, ls="none",
                    zorder=3)
        tr = two_region[(two_region["ratio"] == ratio) & (two_region["limit"] == "none")]
        _region_box(ax, tr.loc[tr["region"] == "ISM", "log_value"].to_numpy(float), 0.0, r_ism,
                    REGION_COLOURS["ISM"], "ISM (two-region)")
        _region_box(ax, tr.loc[tr["region"] == "CGM", "log_value"].to_numpy(float), r_ism, r_cgm,
                    REGION_COLOURS["CGM"], "CGM (two-region)")
        m = median[(median["ratio"] == ratio) & (median["n"] >= min_n)].sort_values("r_mid_kpc")
        if len(m):
            # an unbounded bootstrap side (+-inf: points whose ratio is <= 0 in many realisations) is drawn to
            # the edge of the panel, whose range the finite values set
            ax.autoscale_view()
            lo, hi = ax.get_ylim()
            lo, hi = min(lo, float(m["median"].min())), max(hi, float(m["median"].max()))
            ax.fill_between(m["r_mid_kpc"], np.clip(m["p16"], lo, hi), np.clip(m["p84"], lo, hi), color="k",
                            alpha=0.15, lw=0, zorder=4)
            ax.plot(m["r_mid_kpc"], m["median"], "o-", color="k", lw=2.2, ms=4, zorder=5, label="sample median")
        ax.set_xlim(0, r_max)
        ax.set_xlabel("r [kpc]")
        ax.set_ylabel(f"log {RATIO_LABELS.get(ratio, ratio)}")
        ax.axvline(r_cgm, color=REGION_COLOURS["CGM"], ls=":", lw=0.8)
    for ax in list(axes.flat)[len(ratios):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color="0.55", lw=0.8, label="galaxy components"),
               plt.Line2D([], [], marker="v", mfc="none", mec="0.45", ls="none", label="upper / lower limit (3σ)"),
               plt.Line2D([], [], color="k", lw=2.2, marker="o", label=f"sample median (bootstrap 16-84, n >= {min_n})"),
               plt.Rectangle((0, 0), 1, 1, facecolor=REGION_COLOURS["ISM"], alpha=0.3, label="ISM, 0 - median r_ISM"),
               plt.Rectangle((0, 0), 1, 1, facecolor=REGION_COLOURS["CGM"], alpha=0.3,
                             label="CGM, median r_ISM - r_CGM (dotted)")]
    list(axes.flat)[-1].legend(handles=handles, loc="center", fontsize=8)
    save_figure(fig, pdf, png, synthetic=synthetic)
