"""Figs. 5 and 7: Cloudy Delta log(ratio) profiles with the observed boxes.

Fig. 5 (:func:`plot_fig5`) has one panel per ratio and one line per density
law (paper styles: n_H const cyan dotted squares, r^-2 blue dashed
pentagons, r^-1.5 orange solid circles) for the fiducial N/H; Delta log ratio
is relative to r = 1 kpc (:func:`ismcgm.cloudy.delta_ratios`).  Models that
are ``missing`` (log U outside the grid, never extrapolated) are not drawn
and each panel says which.  The black hatched box spans the observed 16-84
percentile Delta (CGM - ISM) in y and the sample's r_CGM range in x.

Fig. 7 (:func:`plot_fig7`) shows N2 and N2O2 for both N/H variants: the
fiducial log(N/H) = -4.6 (thick line with markers) and the variant with
log(N/H) = -5.1 for r > 1 kpc (thin line without markers), with an arrow from
the first to the second at the outermost radius drawn.

``observed_boxes`` is a DataFrame with columns ``ratio, p16, p84, r_min,
r_max`` (:func:`ismcgm.cloudy.compare.observed_boxes` builds it from the statistics
table of :mod:`ismcgm.stats`); this module only draws.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ismcgm.cloudy.config import DELTA_RATIOS
from ismcgm.plots.fig3_ratios import RATIO_LABELS, panel_grid, save_figure

#: Line styles of the density laws (paper Fig. 5).
LAW_STYLES = {
    "const": {"color": "c", "linestyle": ":", "marker": "s", "label": r"$n_{\rm H}=100$ cm$^{-3}$"},
    "r-2": {"color": "tab:blue", "linestyle": "--", "marker": "p", "label": r"$n_{\rm H}\propto r^{-2}$"},
    "r-1.5": {"color": "tab:orange", "linestyle": "-", "marker": "o", "label": r"$n_{\rm H}\propto r^{-1.5}$"},
}

#: Ratios of Fig. 7.
FIG7_RATIOS = ("N2", "N2O2")

#: Density laws drawn in Fig. 7 (paper).
FIG7_LAWS = ("r-1.5", "r-2")


def _style(law: str, index: int) -> dict:
    if law in LAW_STYLES:
        return dict(LAW_STYLES[law])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {"color": colours[index % len(colours)], "linestyle": "-.", "marker": "^", "label": law}


def _draw_box(ax, boxes: pd.DataFrame | None, ratio: str) -> bool:
    if boxes is None or boxes.empty:
        return False
    row = boxes[boxes["ratio"] == ratio]
    if row.empty:
        return False
    b = row.iloc[0]
    if not all(np.isfinite([b["p16"], b["p84"], b["r_min"], b["r_max"]])):
        return False
    ax.add_patch(
        Rectangle(
            (b["r_min"], b["p16"]),
            b["r_max"] - b["r_min"],
            b["p84"] - b["p16"],
            facecolor="none",
            edgecolor="black",
            hatch="//",
            linewidth=1.0,
            zorder=1,
        )
    )
    return True


def _draw_profile(ax, prof: pd.DataFrame, style: dict, markers: bool = True, linewidth: float = 1.8) -> pd.DataFrame:
    """Draw the non-missing points of one profile; return the drawn rows."""
    prof = prof.sort_values("r_kpc")
    ok = prof[~prof["missing"].astype(bool) & np.isfinite(prof["delta_log_ratio"])]
    if not ok.empty:
        ax.plot(
            ok["r_kpc"],
            ok["delta_log_ratio"],
            color=style["color"],
            linestyle=style["linestyle"],
            marker=style["marker"] if markers else None,
            linewidth=linewidth,
            zorder=3,
        )
    return ok


def _missing_note(delta: pd.DataFrame) -> str:
    """Text naming the models that are not drawn ("const: r = 10, 15 kpc")."""
    bad = delta[delta["missing"].astype(bool) | ~np.isfinite(delta["delta_log_ratio"])]
    if bad.empty:
        return ""
    parts = []
    for law, grp in bad.groupby("density_law", sort=False):
        radii = ", ".join(f"{r:g}" for r in sorted(grp["r_kpc"].unique()))
        parts.append(f"{law}: r = {radii} kpc")
    return "not drawn (outside grid):\n" + "\n".join(parts)


def _finish_panel(ax, ratio: str, note: str) -> None:
    ax.axhline(0.0, color="0.6", linewidth=0.7, zorder=0)
    ax.set_xlabel("r [kpc]")
    ax.set_ylabel(rf"$\Delta\log$ {RATIO_LABELS.get(ratio, ratio)}")
    ax.set_title(RATIO_LABELS.get(ratio, ratio), fontsize=11, loc="left")
    ax.set_xlim(left=0.0)
    if note:
        ax.text(1.0, 1.015, note, transform=ax.transAxes, fontsize=6.5, va="bottom", ha="right", color="0.3")


def _grid_sources(delta: pd.DataFrame) -> str:
    if "grid_source" not in delta.columns:
        return ""
    return ", ".join(sorted(map(str, delta["grid_source"].dropna().unique())))


def plot_fig5(
    delta_df: pd.DataFrame,
    observed_boxes: pd.DataFrame | None,
    pdf,
    png,
    synthetic: bool = False,
    ratios=DELTA_RATIOS,
    title: str | None = None,
    nh_variant: str = "fiducial",
) -> None:
    """Fig. 5: Delta log(ratio) versus r, one panel per ratio.

    Parameters
    ----------
    delta_df : pandas.DataFrame
        Output of :func:`ismcgm.cloudy.delta_ratios`.
    observed_boxes : pandas.DataFrame or None
        ``ratio, p16, p84, r_min, r_max`` (:data:`ismcgm.cloudy.compare.BOX_COLUMNS`).
    pdf, png : str or path-like
        Output files.
    synthetic : bool
        Add the "SYNTHETIC MOCK DATA" label (observed boxes from the mock).
    ratios : sequence of str
        Ratios to draw, in panel order (those absent from ``delta_df`` are skipped).
    title : str, optional
        Figure title.
    nh_variant : str
        N/H variant drawn ('fiducial').
    """
    delta = delta_df[delta_df["nh_variant"] == nh_variant]
    ratios = [r for r in ratios if r in set(delta["ratio"])]
    if not ratios:
        raise ValueError(f"no model ratios to draw for nh_variant={nh_variant!r}; run cloudy.delta_ratios first")
    fig, axes = panel_grid(len(ratios), ncols=3)
    laws = list(dict.fromkeys(delta["density_law"]))
    for ax, ratio in zip(axes, ratios):
        sub = delta[delta["ratio"] == ratio]
        for i, law in enumerate(laws):
            _draw_profile(ax, sub[sub["density_law"] == law], _style(law, i))
        has_box = _draw_box(ax, observed_boxes, ratio)
        _finish_panel(ax, ratio, _missing_note(sub))
        if not has_box:
            ax.text(0.98, 0.98, "no observed box", transform=ax.transAxes, fontsize=7, ha="right", va="top", color="0.4")
    handles = [Line2D([], [], **{k: v for k, v in _style(law, i).items()}) for i, law in enumerate(laws)]
    handles.append(Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="black", hatch="//", label="observed 16-84%"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    src = _grid_sources(delta)
    fig.suptitle(title or f"Cloudy models ({src}): " + r"$\Delta\log$ ratio relative to r = 1 kpc", y=0.955, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.93))
    save_figure(fig, pdf, png, synthetic=synthetic)


def plot_fig7(delta_df, observed_boxes, pdf, png, synthetic=False, ratios=FIG7_RATIOS, density_laws=FIG7_LAWS,
              title=None) -> None:
    """Fig. 7: N2 and N2O2 profiles for both N/H variants.

    Parameters
    ----------
    delta_df, observed_boxes, pdf, png, synthetic
        As for :func:`plot_fig5`; ``delta_df`` holds both N/H variants.
    ratios : sequence of str
        Ratios (default N2, N2O2).
    density_laws : sequence of str
        Density laws drawn (default r^-1.5 and r^-2, as in the paper);
        laws absent from ``delta_df`` are skipped.
    title : str, optional
        Figure title.
    """
    ratios = [r for r in ratios if r in set(delta_df["ratio"])]
    laws = [law for law in density_laws if law in set(delta_df["density_law"])]
    if not ratios or not laws:
        raise ValueError("no N2/N2O2 model profiles to draw; run cloudy.delta_ratios on both N/H variants first")
    fig, axes = panel_grid(len(ratios), ncols=len(ratios), size=4.0)
    for ax, ratio in zip(axes, ratios):
        sub = delta_df[(delta_df["ratio"] == ratio) & delta_df["density_law"].isin(laws)]
        for i, law in enumerate(laws):
            style = _style(law, i)
            fid = _draw_profile(ax, sub[(sub["density_law"] == law) & (sub["nh_variant"] == "fiducial")], style, True, 2.4)
            low = _draw_profile(ax, sub[(sub["density_law"] == law) & (sub["nh_variant"] == "low_outer")], style, False, 1.0)
            _variant_arrow(ax, fid, low, style["color"], dx=0.3 * (i - (len(laws) - 1) / 2))
        _draw_box(ax, observed_boxes, ratio)
        _finish_panel(ax, ratio, _missing_note(sub))
    handles = [Line2D([], [], **_style(law, i)) for i, law in enumerate(laws)]
    handles += [
        Line2D([], [], color="k", linewidth=2.4, marker="o", label="log N/H = -4.6"),
        Line2D([], [], color="k", linewidth=1.0, label="log N/H = -5.1 (r > 1 kpc)"),
        Rectangle((0, 0), 1, 1, facecolor="none", edgecolor="black", hatch="//", label="observed 16-84%"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    src = _grid_sources(delta_df)
    fig.suptitle(title or f"Cloudy models ({src}): N/H variants", y=0.94, fontsize=11)
    fig.tight_layout(rect=(0, 0.13, 1, 0.9))
    save_figure(fig, pdf, png, synthetic=synthetic)


def _variant_arrow(ax, fid: pd.DataFrame, low: pd.DataFrame, colour, dx: float = 0.0) -> None:
    """Arrow from the fiducial to the low-N/H profile at the outermost common radius (+ dx kpc)."""
    common = sorted(set(fid["r_kpc"]) & set(low["r_kpc"]))
    common = [r for r in common if r > 1.0]
    if not common:
        return
    r = common[-1]
    y0 = float(fid.loc[fid["r_kpc"] == r, "delta_log_ratio"].iloc[0])
    y1 = float(low.loc[low["r_kpc"] == r, "delta_log_ratio"].iloc[0])
    if abs(y1 - y0) < 1e-3:
        return
    ax.annotate("", xy=(r + dx, y1), xytext=(r + dx, y0), arrowprops={"arrowstyle": "->", "color": colour, "linewidth": 1.2})
