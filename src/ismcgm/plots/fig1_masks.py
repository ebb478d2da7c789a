"""Figure 1: ISM and CGM masks over the Halpha maps (SPEC section 13).

One panel per galaxy: the continuum-subtracted Halpha map
(:func:`ismcgm.linemap.line_map`) in an arcsinh stretch, the ISM as a contour,
the CGM shaded (merger halves A and B in two colours, their ISM contours in
the same colours), a 10 kpc scale bar and a circle of the 0.2" resolution
(FWHM) in the lower left.  Axes are sky offsets in arcsec from the map
centre, east to the left, north up (the IFU grid has RA decreasing with x).
Merger ISM halves are outlined in the colour of their CGM half.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from astropy.stats import sigma_clipped_stats
from matplotlib.patches import Circle

from ..constants import proper_kpc_per_arcsec
from ..io import atomic_path
from ..wcsutil import pixscale_arcsec

SYNTHETIC_LABEL = "SYNTHETIC MOCK DATA"

#: Colours of the CGM shading: single galaxies, merger half A, merger half B.
CGM_COLOURS = {"": "tab:cyan", "A": "tab:orange", "B": "tab:purple"}
ISM_COLOUR = "white"


def _regions(panel) -> dict:
    m = panel["masks"]
    return m["regions"] if isinstance(m, dict) and "regions" in m else m


def _pixscale(panel) -> float:
    if panel.get("pixscale") is not None:
        return float(panel["pixscale"])
    return pixscale_arcsec(panel["wcs"])


def _draw_panel(ax, panel, resolution_arcsec: float, scale_kpc: float):
    ha = np.asarray(panel["ha_map"], dtype=float)
    ny, nx = ha.shape
    ps = _pixscale(panel)
    # pixel centres -> offsets [arcsec] from the map centre: east offset = -(x - xc) * ps
    # because x grows westward on the IFU grid; the extent runs from +east (left) to -east
    ext = [(0.5 + (nx - 1) / 2) * ps, -(nx - 0.5 - (nx - 1) / 2) * ps,
           (-0.5 - (ny - 1) / 2) * ps, (ny - 0.5 - (ny - 1) / 2) * ps]
    finite = ha[np.isfinite(ha)]
    if finite.size:
        _, _, noise = sigma_clipped_stats(finite, sigma=3.0)
        peak = np.nanpercentile(finite, 99.7)
    else:
        noise, peak = 1.0, 1.0
    soft = noise if noise > 0 else max(abs(peak), 1.0) * 0.05
    peak = max(peak, 5 * soft)
    shown = np.arcsinh(ha / soft)
    vmax = np.arcsinh(peak / soft)
    ax.imshow(shown, origin="lower", extent=ext, cmap="Greys_r", vmin=np.arcsinh(-2.0), vmax=vmax,
              interpolation="nearest")
    yy, xx = np.mgrid[0:ny, 0:nx]
    xs = -(xx - (nx - 1) / 2) * ps
    ys = (yy - (ny - 1) / 2) * ps
    regions = _regions(panel)
    for name, m in regions.items():
        m = np.asarray(m, dtype=bool)
        comp = name.split("_")[1] if "_" in name else ""
        colour = CGM_COLOURS.get(comp, "tab:green")
        if name.startswith("CGM"):
            rgba = np.zeros((ny, nx, 4))
            rgba[m] = (*plt.matplotlib.colors.to_rgb(colour), 0.45)
            ax.imshow(rgba, origin="lower", extent=ext, interpolation="nearest")
            if m.any():
                ax.contour(xs, ys, m.astype(float), levels=[0.5], colors=[colour], linewidths=0.8,
                           corner_mask=False)
        elif name.startswith("ISM") and m.any():
            c = ISM_COLOUR if not comp else colour
            if comp:
                ax.contour(xs, ys, m.astype(float), levels=[0.5], colors=[ISM_COLOUR], linewidths=2.6)
            ax.contour(xs, ys, m.astype(float), levels=[0.5], colors=[c], linewidths=1.6)
    # scale bar: 10 kpc
    kpc_per_arcsec = proper_kpc_per_arcsec(float(panel["z"]))
    bar = scale_kpc / kpc_per_arcsec
    width = ext[0] - ext[1]  # east-to-west extent (positive)
    x1 = ext[1] + 0.06 * width  # right end of the bar (west side)
    y1 = ext[2] + 0.08 * (ext[3] - ext[2])
    ax.plot([x1 + bar, x1], [y1, y1], color="yellow", lw=2)
    ax.text(x1 + bar / 2, y1 + 0.03 * (ext[3] - ext[2]), f"{scale_kpc:g} kpc", color="yellow",
            ha="center", va="bottom", fontsize=7)
    # resolution circle (FWHM diameter) at lower left
    r = 0.5 * resolution_arcsec
    ax.add_patch(Circle((ext[0] - 0.06 * width - r, y1 + r), r, fill=False, color="yellow", lw=1))
    title = str(panel["id"]) + (" (merger)" if panel.get("merger") else "")
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])


def plot_fig1(panels, pdf, png, synthetic: bool = False, resolution_arcsec: float = 0.2,
              scale_kpc: float = 10.0, ncols: int | None = None):
    """Draw Figure 1 (a grid of mask panels) and save it as PDF and PNG.

    Parameters
    ----------
    panels : list of dict
        One per galaxy: ``id``, ``ha_map`` (2-D), ``masks`` (``{name: bool
        array}`` or a :func:`ismcgm.masks.make_masks` result), ``wcs``
        and/or ``pixscale`` [arcsec], ``z``, ``merger``.
    pdf, png : path-like
        Output files (written atomically).
    synthetic : bool
        Print a "SYNTHETIC MOCK DATA" label on the figure.
    resolution_arcsec : float
        Diameter of the resolution circle.
    scale_kpc : float
        Length of the scale bar.
    ncols : int, optional
        Number of panel columns (default about sqrt(N) * 1.3).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = max(len(panels), 1)
    ncols = ncols or min(n, max(1, int(math.ceil(math.sqrt(n) * 1.3))))
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.1 * ncols, 2.2 * nrows + 0.5), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    for ax, panel in zip(axes.ravel(), panels):
        _draw_panel(ax, panel, resolution_arcsec, scale_kpc)
    for ax in axes[-1]:
        ax.set_xlabel(r"$\Delta\alpha$ [arcsec] (E left)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\Delta\delta$ [arcsec]", fontsize=7)
    fig.suptitle(r"ISM (contour) and CGM (shaded) masks on H$\alpha$ maps", fontsize=10, y=0.965)
    if synthetic:
        fig.text(0.5, 0.5, SYNTHETIC_LABEL, fontsize=28, color="red", alpha=0.25, ha="center", va="center",
                 rotation=30, transform=fig.transFigure, zorder=100)
        fig.text(0.01, 0.995, SYNTHETIC_LABEL, fontsize=9, color="red", ha="left", va="top", weight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)
    return fig
