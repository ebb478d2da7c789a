"""Validation figure: recovery of the injected CGM - ISM shifts on the mock survey.

Input is a recovery table with columns :data:`RECOVERY_COLUMNS`, one row per
ratio (several rows per ratio, e.g. from repeated mock realisations, are
drawn side by side).  Left panel: per ratio the injected shift (open
square), the true shift in the actual masks (black bar) and the measured
shift with its +-1 sigma_med (thick) and +-2 sigma_med (thin) error bars.
With the decomposition's columns (issue 19) also the intrinsic shift
(filled diamond, +-1 sigma as ``summary.json`` checks it: the larger of
``intrinsic_sigma_med`` and half the ``intrinsic_p16``-``intrinsic_p84``
range) and the stacked one (open diamond with its 16-84 % range; a triangle
for a bound, with the realisations' median and 16-84 % range behind it as a
faint cross); a ring marks the estimator that ``summary.json`` judges
(:func:`ismcgm.validation.intrinsic_check`: black where it passes, red where
it fails).  Right panel: the pull, (measured - true) / sigma_med, with
the +-2 band; points outside 2 sigma are red.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ismcgm.plots.fig3_ratios import RATIO_LABELS, save_figure
from ismcgm.ratios import RATIOS
from ismcgm.validation import intrinsic_check, intrinsic_sigma

#: Columns expected in the recovery table.
RECOVERY_COLUMNS = (
    "ratio",
    "injected_shift",
    "true_shift",
    "measured_shift",
    "sigma_med",
    "pull",
    "within_2sigma",
)


def _positions(recovery_df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """x position of every row: ratio index plus a small offset per repeat."""
    present = list(pd.unique(recovery_df["ratio"]))
    order = [r for r in RATIOS if r in present] + [r for r in present if r not in RATIOS]
    index = recovery_df["ratio"].map({r: i for i, r in enumerate(order)}).to_numpy(float)
    repeat = recovery_df.groupby("ratio").cumcount().to_numpy(float)
    count = recovery_df.groupby("ratio")["ratio"].transform("size").to_numpy(float)
    offset = np.where(count > 1, (repeat - (count - 1) / 2) * 0.5 / np.maximum(count, 1), 0.0)
    return index + offset, order


def _mark_judged(ax, df: pd.DataFrame, x: np.ndarray) -> bool:
    """Ring the intrinsic estimator that :func:`ismcgm.validation.intrinsic_check` judges in every row
    (per-component at ``x + 0.22``, stack at ``x + 0.36``); True if any row is judged."""
    judged = False
    for i, row in df.iterrows():
        check = intrinsic_check(row)
        if check is None:
            continue
        name, ok = check
        stack = name.startswith("intrinsic_stack_")
        y = row["intrinsic_stack_shift"] if stack else row["intrinsic_shift"]
        ax.plot(x[i] + (0.36 if stack else 0.22), y, "o", mfc="none", mec="k" if ok else "tab:red", ms=11, mew=1.2,
                zorder=6)
        judged = True
    return judged


def plot_recovery(recovery_df: pd.DataFrame, pdf, png, synthetic: bool = True) -> None:
    """Injected, true and measured shift per ratio, and the pulls.

    Parameters
    ----------
    recovery_df : pandas.DataFrame
        Columns :data:`RECOVERY_COLUMNS`.
    pdf, png : str or path-like
        Output files.
    synthetic : bool
        Label the figure "SYNTHETIC MOCK DATA" (recovery runs on the mock
        survey, so True by default).
    """
    missing = [c for c in RECOVERY_COLUMNS if c not in recovery_df.columns]
    if missing:
        raise ValueError(f"recovery table lacks the columns {missing}")
    df = recovery_df.reset_index(drop=True)
    x, order = _positions(df)
    ok = df["within_2sigma"].astype("boolean").fillna(False).to_numpy(bool)
    sig = df["sigma_med"].to_numpy(float)
    meas = df["measured_shift"].to_numpy(float)

    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.errorbar(x, meas, yerr=2 * sig, fmt="none", ecolor="0.6", elinewidth=0.8, capsize=2)
    ax.errorbar(x, meas, yerr=sig, fmt="o", color="tab:blue", elinewidth=2, ms=5, zorder=3)
    ax.plot(x, df["injected_shift"], "s", mfc="none", mec="tab:orange", ms=9, mew=1.5, zorder=4)
    ax.plot(x, df["true_shift"], "_", color="k", ms=16, mew=2, zorder=5)
    handles = [
        Line2D([], [], ls="", marker="s", mfc="none", mec="tab:orange", label="injected"),
        Line2D([], [], ls="", marker="_", color="k", ms=12, mew=2, label="true (masks)"),
        Line2D([], [], ls="-", marker="o", color="tab:blue", label=r"measured $\pm1,2\sigma_{\rm med}$"),
    ]
    if "intrinsic_shift" in df.columns and np.isfinite(df["intrinsic_shift"].to_numpy(float)).any():
        # the decomposition's ISM and halo terms (issue 19), beside the aperture values; sigma as summary.json's
        # check takes it: the larger of sigma_med and half the Monte Carlo 16-84 % range of the median
        nan = np.full(len(df), np.nan)
        sig_i = intrinsic_sigma(df["intrinsic_sigma_med"].to_numpy(float), df.get("intrinsic_p16", nan),
                                df.get("intrinsic_p84", nan))
        ax.errorbar(x + 0.22, df["intrinsic_shift"].to_numpy(float), yerr=sig_i, fmt="D", color="tab:green", ms=4,
                    elinewidth=1.2, zorder=3)
        handles.append(Line2D([], [], ls="-", marker="D", color="tab:green", ms=4,
                              label=r"intrinsic (decomposed) $\pm1\sigma$"))
    if "intrinsic_stack_shift" in df.columns and np.isfinite(df["intrinsic_stack_shift"].to_numpy(float)).any():
        # the sample-level stack: a value with its 16-84 % range, or a bound (triangle pointing to the allowed side)
        stack = df["intrinsic_stack_shift"].to_numpy(float)
        limit = df["intrinsic_stack_limit"].astype(str).to_numpy()
        value = limit == "none"
        err = np.vstack([stack - df["intrinsic_stack_p16"].to_numpy(float),
                         df["intrinsic_stack_p84"].to_numpy(float) - stack])
        ax.errorbar(x[value] + 0.36, stack[value], yerr=err[:, value], fmt="D", mfc="none", mec="tab:green",
                    ecolor="tab:green", ms=4, elinewidth=0.8, zorder=3)
        for kind, marker in (("upper", "v"), ("lower", "^")):
            sel = limit == kind
            ax.plot(x[sel] + 0.36, stack[sel], marker, mfc="none", mec="tab:green", ms=6, ls="", zorder=3)
        handles.append(Line2D([], [], ls="-", marker="D", mfc="none", mec="tab:green", color="tab:green", ms=4,
                              label="intrinsic stack 16–84 % (▽△ bounds)"))
        if {"intrinsic_stack_mc_p16", "intrinsic_stack_mc_p50", "intrinsic_stack_mc_p84"} <= set(df.columns):
            # behind a bound, the realisations' median and 16-84 % range, which the check reads where the bound
            # excludes the injected shift (validation.intrinsic_check)
            p16, p50, p84 = (df[f"intrinsic_stack_mc_{q}"].to_numpy(float) for q in ("p16", "p50", "p84"))
            sel = (limit != "none") & np.isfinite(p16) & np.isfinite(p50) & np.isfinite(p84)
            if sel.any():
                ax.errorbar(x[sel] + 0.36, p50[sel], yerr=np.vstack([p50 - p16, p84 - p50])[:, sel], fmt="x",
                            color="tab:green", ms=4, elinewidth=0.8, ls="none", alpha=0.6, zorder=2)
                handles.append(Line2D([], [], ls="-", marker="x", color="tab:green", alpha=0.6, ms=4,
                                      label="behind a bound: realisations 16–84 %"))
        if "intrinsic_shift" in df.columns and _mark_judged(ax, df, x):
            handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="k", ms=9,
                                  label="judged by summary.json (red: fails)"))
    ax.set_xticks(range(len(order)), [RATIO_LABELS.get(r, r) for r in order], rotation=30)
    ax.set_ylabel(r"$\Delta$ log ratio (CGM $-$ ISM) [dex]")
    # below the axes: inside, it hides the points of large shifts (the 24-galaxy shift mock's O2)
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(len(handles), 3),
              frameon=False)

    axp.axhspan(-2, 2, color="0.9", zorder=0)
    axp.axhline(0.0, color="0.5", lw=0.8)
    axp.scatter(x[ok], df["pull"].to_numpy(float)[ok], color="tab:blue", zorder=3, label=r"$|$pull$|\leq 2$")
    axp.scatter(x[~ok], df["pull"].to_numpy(float)[~ok], color="tab:red", zorder=3, label="outside 2$\\sigma$")
    axp.set_xticks(range(len(order)), [RATIO_LABELS.get(r, r) for r in order], rotation=30)
    axp.set_ylabel(r"pull = (measured $-$ true) / $\sigma_{\rm med}$")
    # below the axes as on the left: inside, it can sit on a point near +2
    axp.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    save_figure(fig, pdf, png, synthetic)
