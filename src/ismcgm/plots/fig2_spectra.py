"""Figure 2: example ISM and CGM spectra with their line fits.

One row per spectrum (e.g. the ISM and the CGM of a galaxy in one grating),
and in each row one panel per group of lines, zoomed to +-``zoom_kms``
around the lines: the data as a histogram with its 1-sigma band, the
best-fit model (:meth:`ismcgm.fit.FitResult.model`) and the expected line
positions at the systemic redshift.
"""

from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.gridspec import GridSpec

from .. import instrument

__all__ = ["plot_fig2", "LINE_LABELS"]

#: Plot labels of the instrument lines.
LINE_LABELS = {
    "OII3728": "[O II] 3726,3729",
    "HB": r"H$\beta$",
    "OIII4959": "[O III] 4959",
    "OIII5007": "[O III] 5007",
    "NII6548": "[N II] 6548",
    "HA": r"H$\alpha$",
    "NII6583": "[N II] 6583",
    "SII6716": "[S II] 6716",
    "SII6731": "[S II] 6731",
}

_REQUIRED = ("label", "wave_um", "flux", "err", "model", "z", "grating")


def _check_panel(i, panel):
    missing = [key for key in _REQUIRED if key not in panel]
    if missing:
        raise ValueError(f"panel {i} ({panel.get('label', '?')}) lacks {', '.join(missing)}")
    wave = np.asarray(panel["wave_um"], dtype=float)
    for key in ("flux", "err", "model"):
        if panel[key] is not None and np.shape(panel[key]) != wave.shape:
            raise ValueError(
                f"panel {i} ({panel['label']}): {key} has shape {np.shape(panel[key])}, "
                f"wave_um {wave.shape}"
            )


def _zoom_windows(wave_um, z, grating, zoom_kms):
    """Merged zoom ranges ``[(lo, hi, [lines]), ...]`` [micron] of the lines in range."""
    lines = [
        name
        for name in instrument.lines_in_grating(grating, z, margin_um=0.0)
        if wave_um[0] <= instrument.observed_wavelength_um(name, z) <= wave_um[-1]
    ]
    wins = []
    for name in sorted(lines, key=lambda n: instrument.LINE_WAVELENGTHS[n]):
        lam = instrument.observed_wavelength_um(name, z)
        lo = max(lam * (1 - zoom_kms / instrument.C_KMS), wave_um[0])
        hi = min(lam * (1 + zoom_kms / instrument.C_KMS), wave_um[-1])
        if wins and lo <= wins[-1][1]:
            wins[-1][1] = max(wins[-1][1], hi)
            wins[-1][2].append(name)
        else:
            wins.append([lo, hi, [name]])
    return [tuple(w) for w in wins]


def _draw_window(ax, panel, lo, hi, lines, unit):
    wave = np.asarray(panel["wave_um"], dtype=float)
    sel = (wave >= lo) & (wave <= hi)
    w = wave[sel]
    f = np.asarray(panel["flux"], dtype=float)[sel] / unit
    e = np.asarray(panel["err"], dtype=float)[sel] / unit
    ax.fill_between(w, f - e, f + e, step="mid", color="0.8", lw=0, label=r"1$\sigma$")
    ax.step(w, f, where="mid", color="k", lw=0.8, label="data")
    if panel["model"] is not None:
        m = np.asarray(panel["model"], dtype=float)[sel] / unit
        ax.plot(w, m, color="tab:red", lw=1.2, label="fit")
    ax.axhline(0.0, color="0.5", lw=0.5, ls=":")
    ax.set_xlim(lo, hi)
    finite = np.isfinite(f) & np.isfinite(e)
    if np.any(finite):  # head room for the line labels
        bottom, top = np.min((f - e)[finite]), np.max((f + e)[finite])
        ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.35 * (top - bottom))
    for name in lines:
        lam = instrument.observed_wavelength_um(name, panel["z"])
        ax.axvline(lam, color="tab:blue", lw=0.6, ls="--", alpha=0.6)
        ax.text(lam, 0.98, LINE_LABELS.get(name, name), transform=ax.get_xaxis_transform(),
                rotation=90, va="top", ha="right", fontsize=7, color="tab:blue")


def plot_fig2(panels, outfile_pdf, outfile_png, title=None, synthetic=True, zoom_kms=2500.0, unit=1e-20):
    """Plot spectra and their fits, zoomed around the emission lines.

    Parameters
    ----------
    panels : list of dict
        One per row, with keys ``label`` (e.g. ``"G3 ISM, G395M"``),
        ``wave_um`` (n,), ``flux`` (n,) and ``err`` (n,) [erg/s/cm^2/A],
        ``model`` (n,) or None (best-fit model on ``wave_um``, NaN outside
        the fitting windows), ``z`` (systemic redshift) and ``grating``.
    outfile_pdf, outfile_png : str or path-like
        Output files.
    title : str, optional
        Figure title.
    synthetic : bool
        Print a "SYNTHETIC MOCK DATA" label across the figure (mock survey).
    zoom_kms : float
        Half-width [km/s] of the zoom around every line; overlapping zooms
        are merged into one panel.
    unit : float
        Flux-density unit of the y axis [erg/s/cm^2/A].

    Raises
    ------
    ValueError
        For an empty ``panels``, a panel lacking a key, inconsistent array
        shapes, or a spectrum without any line of the model in its range.
    """
    if not panels:
        raise ValueError("plot_fig2 needs at least one panel")
    layouts = []
    for i, panel in enumerate(panels):
        _check_panel(i, panel)
        wave = np.asarray(panel["wave_um"], dtype=float)
        wins = _zoom_windows(wave, panel["z"], panel["grating"], zoom_kms)
        if not wins:
            raise ValueError(
                f"panel {i} ({panel['label']}): no line of the model between "
                f"{wave[0]:.3f} and {wave[-1]:.3f} micron at z={panel['z']:.4f}"
            )
        layouts.append(wins)
    fig = plt.figure(figsize=(11.0, 2.6 * len(panels) + 0.8))
    outer = GridSpec(len(panels), 1, figure=fig, hspace=0.45)
    exponent = int(np.round(np.log10(unit)))
    ylabel = rf"$F_\lambda$ [$10^{{{exponent}}}$ erg s$^{{-1}}$ cm$^{{-2}}$ $\AA^{{-1}}$]"
    for i, (panel, wins) in enumerate(zip(panels, layouts)):
        widths = [hi - lo for lo, hi, _ in wins]
        inner = outer[i].subgridspec(1, len(wins), width_ratios=widths, wspace=0.08)
        for j, (lo, hi, lines) in enumerate(wins):
            ax = fig.add_subplot(inner[0, j])
            _draw_window(ax, panel, lo, hi, lines, unit)
            ax.tick_params(labelsize=8)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
                ax.set_title(
                    f"{panel['label']}  ({str(panel['grating']).upper()}, z = {panel['z']:.3f})",
                    loc="left", fontsize=9,
                )
            if i == len(panels) - 1:
                ax.set_xlabel(r"observed wavelength [$\mu$m]", fontsize=8)
            if i == 0 and j == 0:
                handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncols=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    if synthetic:
        fig.text(0.5, 0.5, "SYNTHETIC MOCK DATA", fontsize=44, color="tab:red", alpha=0.25,
                 rotation=20, ha="center", va="center", weight="bold", zorder=10)
        fig.text(0.99, 0.005, "SYNTHETIC MOCK DATA", fontsize=9, color="tab:red",
                 ha="right", va="bottom", weight="bold")
    fig.savefig(outfile_pdf, bbox_inches="tight")
    fig.savefig(outfile_png, dpi=150, bbox_inches="tight")
    plt.close(fig)
