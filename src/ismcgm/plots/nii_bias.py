"""[N II] S/N bias test figure (SPEC section 12, paper Appendix B).

Median fitted/true [N II]6583 flux versus S/N([N II]6583) with the 16-84
percentile range of the trials, the unbiased value 1, the expected
1 +- 1/(S/N) scatter of a correctly calibrated simulation, and, for
reference, the paper's statement (their fits, q3dfit): fitted/true ~ 0.5 at
S/N < 5.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from ismcgm.plots.fig3_ratios import save_figure

#: The paper's result (Appendix B): fitted/true ~ 0.5 at S/N < 5.
PAPER_RATIO = 0.5
PAPER_SNR_MAX = 5.0


def plot_nii_bias(table: pd.DataFrame, pdf, png, title: str | None = None) -> None:
    """Draw the table of :func:`ismcgm.niibias.nii_bias_table` to ``pdf`` and ``png``."""
    t = table.sort_values("snr")
    snr = t["snr"].to_numpy(float)
    med = t["median_fitted_over_true"].to_numpy(float)
    lo, hi = t["p16"].to_numpy(float), t["p84"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(5.2, 3.9))
    grid = np.geomspace(min(snr.min(), 2.0), max(snr.max(), 30.0), 100)
    ax.fill_between(grid, 1 - 1 / grid, 1 + 1 / grid, color="0.88", zorder=0, label=r"$1 \pm 1/(S/N)$ (calibration)")
    ax.axhline(1.0, color="0.4", linewidth=0.8, zorder=1)
    ax.errorbar(snr, med, yerr=[med - lo, hi - med], fmt="o-", color="tab:blue", capsize=3, zorder=3,
                label="this workflow (fast fitter): median, 16-84%")
    ax.plot([grid[0], PAPER_SNR_MAX], [PAPER_RATIO, PAPER_RATIO], color="tab:red", linestyle="--", linewidth=1.5,
            zorder=2, label="paper (their fits): ~0.5 at S/N < 5")
    ax.set_xscale("log")
    ax.set_xticks(snr)
    ax.set_xticklabels([f"{s:g}" for s in snr])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(grid[0], grid[-1])
    ax.set_xlabel(r"S/N([N II]$\lambda$6583)")
    ax.set_ylabel(r"fitted / true $F_{\rm [N\,II]\lambda6583}$")
    n = ", ".join(sorted({str(int(v)) for v in t["n_trials"]}))
    ax.set_title(title or f"[N II] S/N bias test ({n} trials per S/N)", fontsize=10)
    ax.set_ylim(0.0, max(1.8, float(np.nanmax(hi)) + 0.1) if np.isfinite(hi).any() else 1.8)
    ax.legend(fontsize=7, loc="lower right", frameon=False)
    fig.tight_layout()
    save_figure(fig, pdf, png, synthetic=False)
