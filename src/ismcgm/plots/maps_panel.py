"""Per-galaxy map panel (issue 18): Hα flux, velocity, O32 and N2 in the Voronoi bins."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from astropy.io import fits

from ismcgm.plots.fig3_ratios import save_figure

#: (extension, title, colour map) of the four panels.
PANELS = (("FLUX_HA", r"H$\alpha$ flux per spaxel [erg s$^{-1}$ cm$^{-2}$]", "magma"),
          ("VELOCITY", "velocity [km/s]", "RdBu_r"),
          ("LOG_O32", "log O32", "viridis"),
          ("LOG_N2", "log N2", "viridis"))


def title_of(maps_path, gid: str) -> str:
    """Panel title from a MAPS file: galaxy, number of Voronoi bins, reference line and target S/N."""
    with fits.open(maps_path) as hdul:
        binid, hdr = hdul["BINID"].data, hdul[0].header
        n_bins = np.unique(binid[binid >= 0]).size
    return f"{gid}: {n_bins} Voronoi bins ({hdr['REFLINE']}, S/N {hdr['TARGETSN']:g})"


def plot_maps(maps_path, masks_dict, pdf, png, title="", synthetic: bool = False) -> None:
    """Four-panel map of one galaxy from its MAPS file, with the ISM/CGM mask contours."""
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.9), layout="constrained")
    if synthetic:
        fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.88))
    with fits.open(maps_path) as hdul:
        names = [h.name for h in hdul]
        binid = hdul["BINID"].data
        ys, xs = np.nonzero(binid >= 0)
        pad = 2
        box = (max(xs.min() - pad, 0) - 0.5, min(xs.max() + pad, binid.shape[1] - 1) + 0.5,
               max(ys.min() - pad, 0) - 0.5, min(ys.max() + pad, binid.shape[0] - 1) + 0.5) if xs.size else None
        for ax, (ext, label, cmap) in zip(axes, PANELS):
            data = np.asarray(hdul[ext].data, float) if ext in names else np.full(binid.shape, np.nan)
            if ext == "FLUX_HA" and "FLUX_HA" not in names and "FLUX_OIII5007" in names:
                data, label = np.asarray(hdul["FLUX_OIII5007"].data, float), "[O III] flux per spaxel"
            finite = data[np.isfinite(data)]
            kw = {}
            if ext == "VELOCITY" and finite.size:
                v = np.nanmax(np.abs(finite))
                kw = {"vmin": -v, "vmax": v}
            im = ax.imshow(data, origin="lower", cmap=cmap, interpolation="nearest", **kw)
            fig.colorbar(im, ax=ax, shrink=0.8)
            edges = np.zeros(binid.shape, float)
            edges[:, 1:] += binid[:, 1:] != binid[:, :-1]
            edges[1:, :] += binid[1:, :] != binid[:-1, :]
            ax.contour(edges > 0, levels=[0.5], colors="0.6", linewidths=0.3)
            for name, m in sorted(masks_dict.items(), key=lambda kv: kv[0].startswith("ISM")):  # ISM on top
                ax.contour(m.astype(float), levels=[0.5], colors="w" if name.startswith("ISM") else "c",
                           linewidths=0.9)
            ax.set_title(label, fontsize=9)
            if box is not None:
                ax.set_xlim(box[0], box[1])
                ax.set_ylim(box[2], box[3])
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.text(0.01, 0.01, title + "  (white: ISM mask, cyan: CGM mask, grey: bin edges; blank: limit)",
                 fontsize=9, va="bottom")
    save_figure(fig, pdf, png, synthetic=synthetic)
