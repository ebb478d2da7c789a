"""Fig. 6: F[C II]/F(Ha) of the ISM versus the CGM (paper Fig. 6, SPEC sections 11 and 13).

Upper panel: ``cii_ha`` (linear ratio, Ha dust-corrected) of the ISM on x and
of the CGM on y, log axes, one point per galaxy component, coloured by
``delta_balmer`` = log(Ha/Hb)_CGM - log(Ha/Hb)_ISM (diverging colour map,
symmetric about 0).  Points whose Delta(Ha/Hb) is uncertain (a Balmer limit
or undefined: ``delta_balmer_limit`` or NaN) are grey with white hatches.
Merger components are diamonds with a blue (a) or red (b) edge, linked by a
thin line.  A non-detected [C II] region is drawn at its 3-sigma upper limit
with an arrow towards lower values on its axis.  Error bars run from the 16th
to the 84th percentile of the ratio over the Monte Carlo realisations
(``cii_ha_p16``/``cii_ha_p84``).  The dashed green line is
the 1:1 relation; simulated galaxies (``ratio_inner`` on x, ``ratio_outer``
on y of :func:`ismcgm.cii.sim_profiles`) are grey stars with black edges.

Lower panel (when ``sim_profiles`` is given): Delta log(F[C II]/F(Ha))
versus radius.  The observed CGM - ISM differences (detected pairs) are a
black hatched box spanning their 16th-84th percentiles in y and, in x, from
1.5 kpc to the median ``r_cgm_kpc`` (6 kpc when the table has no radii); the
simulation profiles (``log10 ratio_norm``, normalised at 1.5 kpc) are shown
as their median (red line) and 16th-84th percentile band; the simulation
stars are at (``r_drop_kpc``, ``delta_log``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm

from .fig3_ratios import COMPONENT_EDGES, component_suffix, save_figure

#: Colour map of Delta log(Ha/Hb)_CGM-ISM.
DELTA_CMAP = "coolwarm"

#: Length of the upper-limit arrows [dex].
ARROW_DEX = 0.15

#: Default outer x edge of the observed box in the lower panel [kpc].
DEFAULT_BOX_R_KPC = 6.0


def _pairs(cii_df: pd.DataFrame) -> pd.DataFrame:
    """One row per component with ISM and CGM columns side by side."""
    df = cii_df.copy()
    if "delta_balmer_limit" not in df.columns:
        df["delta_balmer_limit"] = False
    keys = ["id", "component"]
    if not {"cii_ha_p16", "cii_ha_p84"} <= set(df.columns):  # older tables: symmetric errors
        df["cii_ha_p16"], df["cii_ha_p84"] = df["cii_ha"] - df["cii_ha_err"], df["cii_ha"] + df["cii_ha_err"]
    cols = ["cii_ha", "cii_ha_err", "cii_ha_p16", "cii_ha_p84", "detected"]
    ism = df[df["region"] == "ISM"][keys + cols + ["delta_balmer", "delta_balmer_limit"]]
    cgm = df[df["region"] == "CGM"][keys + cols]
    pairs = ism.merge(cgm, on=keys, how="inner", suffixes=("_ism", "_cgm"))
    if "r_cgm_kpc" in df.columns:
        pairs = pairs.merge(df[df["region"] == "CGM"][keys + ["r_cgm_kpc"]], on=keys, how="left")
    pairs["suffix"] = [component_suffix(r) for _, r in pairs.iterrows()]
    pairs["merger"] = pairs["suffix"] != ""
    return pairs


def _log_bars(pairs, region: str) -> np.ndarray:
    """Asymmetric log error bars ``(2, N)`` from the 16th/84th percentiles (NaN where undefined)."""
    value = pairs[f"cii_ha_{region}"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.log10(value) - np.log10(pairs[f"cii_ha_p16_{region}"].to_numpy(float))
        hi = np.log10(pairs[f"cii_ha_p84_{region}"].to_numpy(float)) - np.log10(value)
    # a 16th percentile <= 0 (a [C II] consistent with zero) has no log: the bar runs off the panel
    lo = np.where(np.isnan(lo) & np.isfinite(hi), np.inf, lo)
    return np.vstack([lo, hi])


def _bar(bars, i):
    b = bars[:, i]
    if np.isnan(b).any():
        return None
    return [[min(max(b[0], 0.0), 10.0)], [min(max(b[1], 0.0), 10.0)]]


def _upper(ax, pairs, norm, cmap):
    x = np.log10(pairs["cii_ha_ism"].to_numpy(float))
    y = np.log10(pairs["cii_ha_cgm"].to_numpy(float))
    xe, ye = _log_bars(pairs, "ism"), _log_bars(pairs, "cgm")
    for _, grp in pairs[pairs["merger"]].groupby("id"):
        if len(grp) == 2:
            ax.plot(np.log10(grp["cii_ha_ism"]), np.log10(grp["cii_ha_cgm"]), "-", color="0.5", lw=0.8, zorder=2)
    for i, row in pairs.reset_index(drop=True).iterrows():
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        d = row["delta_balmer"]
        uncertain = bool(row["delta_balmer_limit"]) or not np.isfinite(d)
        face = "0.6" if uncertain else cmap(norm(d))
        marker = "D" if row["merger"] else "o"
        edge = COMPONENT_EDGES.get(row["suffix"], "black")
        ax.errorbar(x[i], y[i],
                    xerr=_bar(xe, i) if row["detected_ism"] else None,
                    yerr=_bar(ye, i) if row["detected_cgm"] else None,
                    fmt="none", ecolor="0.4", elinewidth=0.8, zorder=3)
        ax.scatter(x[i], y[i], s=55, marker=marker, c=[face], edgecolors=edge,
                   linewidths=1.3 if row["suffix"] else 0.7, hatch="///" if uncertain else None, zorder=4)
        style = {"arrowstyle": "-|>", "color": "0.3", "lw": 1.0, "mutation_scale": 8}
        if not row["detected_ism"]:
            ax.annotate("", xy=(x[i] - ARROW_DEX, y[i]), xytext=(x[i], y[i]), arrowprops=style)
        if not row["detected_cgm"]:
            ax.annotate("", xy=(x[i], y[i] - ARROW_DEX), xytext=(x[i], y[i]), arrowprops=style)
    return x, y


def plot_fig6(cii_df: pd.DataFrame, sim_summary: pd.DataFrame | None, pdf, png, synthetic: bool = False,
              sim_profiles: pd.DataFrame | None = None) -> None:
    """Draw Fig. 6 and save it as PDF and PNG.

    Parameters
    ----------
    cii_df : pandas.DataFrame
        :func:`ismcgm.cii.cii_ratio_table` (``id, component, region, cii_ha,
        cii_ha_err, detected, delta_balmer`` [+ ``delta_balmer_limit``,
        ``r_cgm_kpc``]).
    sim_summary : pandas.DataFrame or None
        ``sim, ratio_inner, ratio_outer`` [+ ``delta_log, r_drop_kpc``].
    pdf, png : path-like
        Outputs.
    synthetic : bool
        Add the "SYNTHETIC MOCK DATA" label (mock survey / synthetic simulations).
    sim_profiles : pandas.DataFrame, optional
        ``sim, r_kpc, ratio_norm``: adds the lower panel.
    """
    lower = sim_profiles is not None and len(sim_profiles) > 0
    top = 0.95 if synthetic else 1.0
    if lower:
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.0, 9.6), gridspec_kw={"height_ratios": [1.25, 1.0]},
                                      layout="constrained")
    else:
        fig, ax = plt.subplots(figsize=(6.0, 5.6), layout="constrained")
        ax2 = None
    fig.get_layout_engine().set(rect=(0, 0, 1, top))
    cmap = plt.get_cmap(DELTA_CMAP)
    pairs = _pairs(cii_df)
    d = pairs["delta_balmer"].to_numpy(float) if len(pairs) else np.array([])
    lim = np.nanmax(np.abs(d)) if np.isfinite(d).any() else 0.3
    lim = max(lim, 0.05)
    norm = TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    x, y = _upper(ax, pairs, norm, cmap) if len(pairs) else (np.array([]), np.array([]))

    vals = [v for v in np.concatenate([x, y]) if np.isfinite(v)]
    if sim_summary is not None and len(sim_summary):
        sx = np.log10(sim_summary["ratio_inner"].to_numpy(float))
        sy = np.log10(sim_summary["ratio_outer"].to_numpy(float))
        ok = np.isfinite(sx) & np.isfinite(sy)
        ax.scatter(sx[ok], sy[ok], marker="*", s=130, c="0.6", edgecolors="black", linewidths=0.8, zorder=5,
                   label="simulations")
        vals += list(sx[ok]) + list(sy[ok])
    lo, hi = (min(vals) - 0.3, max(vals) + 0.3) if vals else (-1.5, 0.5)
    ax.plot([lo, hi], [lo, hi], "--", color="green", lw=1.0, zorder=1, label="1:1")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(r"log $F_{\rm [CII]}/F_{\rm H\alpha}$ (ISM)")
    ax.set_ylabel(r"log $F_{\rm [CII]}/F_{\rm H\alpha}$ (CGM)")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(r"$\Delta\log(H\alpha/H\beta)_{\rm CGM-ISM}$")
    ax.legend(loc="upper left", fontsize=8, frameon=False)

    if ax2 is not None:
        _lower(ax2, pairs, sim_summary, sim_profiles)
    save_figure(fig, pdf, png, synthetic=synthetic)


def _lower(ax, pairs, sim_summary, sim_profiles):
    prof = sim_profiles.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        prof["dlog"] = np.log10(prof["ratio_norm"].to_numpy(float))
    grid = prof.pivot_table(index="r_kpc", columns="sim", values="dlog")
    r = grid.index.to_numpy(float)
    q = np.nanpercentile(grid.to_numpy(float), [16, 50, 84], axis=1) if grid.shape[1] else np.full((3, r.size), np.nan)
    ax.fill_between(r, q[0], q[2], color="tab:red", alpha=0.25, lw=0, label="simulations 16-84%")
    ax.plot(r, q[1], "-", color="tab:red", lw=1.5, label="simulations median")
    if sim_summary is not None and len(sim_summary) and {"r_drop_kpc", "delta_log"} <= set(sim_summary.columns):
        ax.scatter(sim_summary["r_drop_kpc"], sim_summary["delta_log"], marker="*", s=110, c="black", zorder=5,
                   label="simulations (apertures)")
    det = pairs[pairs["detected_ism"].astype(bool) & pairs["detected_cgm"].astype(bool)] if len(pairs) else pairs
    if len(det):
        with np.errstate(invalid="ignore", divide="ignore"):
            dl = np.log10(det["cii_ha_cgm"].to_numpy(float) / det["cii_ha_ism"].to_numpy(float))
        dl = dl[np.isfinite(dl)]
        if dl.size:
            y0, y1 = np.percentile(dl, [16, 84])
            if y1 - y0 < 0.02:
                y0, y1 = y0 - 0.01, y1 + 0.01
            x1 = float(np.nanmedian(det["r_cgm_kpc"])) if "r_cgm_kpc" in det.columns else DEFAULT_BOX_R_KPC
            if not np.isfinite(x1) or x1 <= 1.5:
                x1 = DEFAULT_BOX_R_KPC
            ax.add_patch(plt.Rectangle((1.5, y0), x1 - 1.5, y1 - y0, fill=False, hatch="///", edgecolor="black",
                                       lw=1.0, label="observed CGM - ISM", zorder=4))
            ax.plot([1.5, x1], [np.median(dl)] * 2, "-", color="black", lw=1.0, zorder=4)
    ax.axhline(0.0, color="0.5", lw=0.6, ls=":")
    ax.set_xlabel("r [kpc]")
    ax.set_ylabel(r"$\Delta\log(F_{\rm [CII]}/F_{\rm H\alpha})$ (norm. at 1.5 kpc)")
    ax.set_xlim(0, max(15.0, float(np.nanmax(r)) if r.size else 15.0))
    ax.legend(loc="best", fontsize=7, frameon=True, framealpha=0.8)
