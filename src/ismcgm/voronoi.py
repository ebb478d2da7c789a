"""Adaptive Voronoi bins and MAPS-style line-ratio maps (issue 18 item 1).

Bins
----
Spaxels of each component's ISM + CGM footprint (the two-region masks, so a
bin never crosses a merger's split line and never leaves the analysed area)
are binned with ``vorbin`` (Cappellari & Copin 2003, as GIST and the MaNGA
DAP) to a target S/N of a reference line (config ``resolved.voronoi``:
``line``, default Hα, and ``target_snr``, default 5).  The per-spaxel
signal is the continuum-subtracted window collapse of
:func:`ismcgm.linemap.line_map` on the reference grating (the masks' grid),
its noise ``sqrt(sum ERR^2)`` over the same window.  When every spaxel
already reaches the target each is its own bin; when the whole footprint
does not, it is one bin.  Bin ``k`` is a region named ``bin%03d`` (also its
Monte Carlo key), stacked, fitted and turned into ratios exactly like the
annuli (:mod:`ismcgm.resolved`).

Maps
----
``<id>_maps.fits``: ``BINID`` (-1 outside the bins), ``FLUX_<LINE>`` and
``FLUXERR_<LINE>`` (observed, erg/s/cm2 per spaxel: the bin's flux divided
by its spaxel count), ``VELOCITY``, ``SIGMA`` [km/s] (reference grating),
``EBV`` (E(B-V)_gas) and ``LOG_<RATIO>`` (NaN where the ratio is a limit),
every extension with the aligned celestial WCS of the masks.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from astropy.io import fits

from .constants import proper_kpc_per_arcsec
from .io import atomic_path
from .ratios import preferred_grating
from .resolved import component_positions, radius_map_kpc

log = logging.getLogger(__name__)

#: Columns of the per-bin table (then ``log_<ratio>`` and ``limit_<ratio>`` per ratio).
BIN_COLUMNS = ["id", "component", "region", "bin", "n_spaxels", "x_pix", "y_pix", "r_kpc", "ref_snr",
               "velocity_kms", "sigma_kms", "ebv_gas"]


def bin_key(k: int) -> str:
    """Region name (and Monte Carlo key) of Voronoi bin ``k``."""
    return f"bin{k:03d}"


def _vorbin(x, y, signal, noise, target):
    """Bin numbers of the spaxels (vorbin, with the two degenerate cases handled)."""
    with warnings.catch_warnings():  # vorbin 3.2 warns at import that PowerBin supersedes it
        warnings.simplefilter("ignore")
        from vorbin.voronoi_2d_binning import voronoi_2d_binning

    sn = signal / noise
    if np.all(sn >= target):
        return np.arange(x.size)
    if np.sum(signal) / np.sqrt(np.sum(noise**2)) < target or x.size < 2:
        return np.zeros(x.size, int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = voronoi_2d_binning(x.astype(float), y.astype(float), signal, noise, target, plot=False, quiet=True,
                                 pixelsize=1.0)
    return np.asarray(out[0], int)


def voronoi_bins(row, region_masks: dict, signal, noise, target_snr: float = 5.0):
    """Voronoi bins of every component's ISM + CGM footprint.

    Returns ``(bins, regions, binid)``: ``{extension: bool map}``, a list of
    ``(component, region, extension)`` and the bin-id map (-1 outside).
    """
    gid = row["id"]
    binid = np.full(signal.shape, -1, int)
    bins, regions = {}, []
    k0 = 0
    for component, suffix, _ in component_positions(row):
        foot = region_masks[f"ISM{suffix}"] | region_masks[f"CGM{suffix}"]
        use = foot & np.isfinite(signal) & np.isfinite(noise)
        if not use.any():
            log.warning("%s: no usable spaxel in %s", gid, component)
            continue
        y, x = np.nonzero(use)
        numbers = _vorbin(x, y, signal[use], noise[use], float(target_snr))
        for n in np.unique(numbers):
            m = np.zeros(signal.shape, bool)
            m[y[numbers == n], x[numbers == n]] = True
            ext = f"BIN{k0:03d}"
            bins[ext] = m
            binid[m] = k0
            regions.append((component, bin_key(k0), ext))
            k0 += 1
    return bins, regions, binid


def bin_table(gid, regions, bins, signal, noise, wcs, row, fluxes: pd.DataFrame, ratios: pd.DataFrame,
              ref_grating: str, kpc_per_arcsec: float | None = None) -> pd.DataFrame:
    """Per-bin table: geometry, reference S/N, kinematics, E(B-V) and every ratio (``kpc_per_arcsec``: as in
    :func:`ismcgm.resolved.annulus_masks`)."""
    scale = proper_kpc_per_arcsec(float(row["z"])) if kpc_per_arcsec is None else float(kpc_per_arcsec)
    centre = {c: pos for c, _, pos in component_positions(row)}
    ref = fluxes[(fluxes["grating"] == ref_grating) & (fluxes["line"] == "HA")].set_index(["component", "region"])
    if ref.empty:
        ref = fluxes[fluxes["grating"] == ref_grating].drop_duplicates(["component", "region"]).set_index(
            ["component", "region"])
    rows = []
    for component, region, ext in regions:
        m = bins[ext]
        y, x = np.nonzero(m)
        r = radius_map_kpc(wcs, m.shape, centre[component], scale)[m].mean()
        key = (component, region)
        rows.append({
            "id": gid, "component": component, "region": region, "bin": int(region[3:]), "n_spaxels": int(m.sum()),
            "x_pix": float(x.mean()), "y_pix": float(y.mean()), "r_kpc": float(r),
            "ref_snr": float(np.nansum(signal[m]) / np.sqrt(np.nansum(noise[m] ** 2))),
            "velocity_kms": float(ref.loc[key, "velocity_kms"]) if key in ref.index else np.nan,
            "sigma_kms": float(ref.loc[key, "sigma_kms"]) if key in ref.index else np.nan,
            "ebv_gas": float(ref.loc[key, "ebv_gas"]) if key in ref.index else np.nan,
        })
    out = pd.DataFrame(rows, columns=BIN_COLUMNS)
    if len(ratios):
        wide = ratios.pivot_table(index=["component", "region"], columns="ratio", values="log_value", aggfunc="first",
                                  dropna=False)
        lim = ratios.pivot_table(index=["component", "region"], columns="ratio", values="limit", aggfunc="first",
                                 dropna=False)
        for r in ratios["ratio"].unique():
            out[f"log_{r}"] = [wide.loc[(c, g), r] if (c, g) in wide.index else np.nan
                               for c, g in zip(out["component"], out["region"])]
            out[f"limit_{r}"] = [lim.loc[(c, g), r] if (c, g) in lim.index else "undefined"
                                 for c, g in zip(out["component"], out["region"])]
    return out


def write_maps(path, binid, table: pd.DataFrame, fluxes: pd.DataFrame, wcs, meta=None, ratios=()) -> None:
    """Write the MAPS-style FITS (see module docstring)."""
    whdr = wcs.celestial.to_header()
    prim = fits.PrimaryHDU()
    for k, v in (meta or {}).items():
        prim.header[k] = v
    hdus = [prim]

    def image(name, data, unit="", comment=""):
        h = fits.Header()
        h.update(whdr)
        if unit:
            h["BUNIT"] = unit
        if comment:
            h["COMMENT"] = comment
        hdus.append(fits.ImageHDU(np.asarray(data, dtype=np.float32 if name != "BINID" else np.int32), header=h,
                                  name=name))

    image("BINID", binid, comment="Voronoi bin number (-1: not binned)")
    bin_of = {int(b): (c, g) for b, c, g in zip(table["bin"], table["component"], table["region"])}
    nspax = dict(zip(table["bin"], table["n_spaxels"]))

    def per_bin(values: dict, per_spaxel=False):
        out = np.full(binid.shape, np.nan)
        for b, (c, g) in bin_of.items():
            v = values.get((c, g), np.nan)
            out[binid == b] = v / nspax[b] if per_spaxel else v
        return out

    pref = preferred_grating(fluxes)
    for line, g in pref.groupby("line", sort=False):
        f = {(c, r): (fl if det else np.nan) for c, r, fl, det in zip(g["component"], g["region"], g["flux"],
                                                                     g["detected"])}
        e = {(c, r): v for c, r, v in zip(g["component"], g["region"], g["flux_err"])}
        image(f"FLUX_{line}", per_bin(f, True), "erg / (s cm2)", "observed flux per spaxel (bin flux / n_spaxels); "
                                                                  "NaN: not detected")
        image(f"FLUXERR_{line}", per_bin(e, True), "erg / (s cm2)")
    for col, name, unit in (("velocity_kms", "VELOCITY", "km / s"), ("sigma_kms", "SIGMA", "km / s"),
                            ("ebv_gas", "EBV", "mag")):
        image(name, per_bin(dict(zip(zip(table["component"], table["region"]), table[col]))), unit)
    for r in ratios:
        vals = {(c, g): (v if lim == "none" else np.nan) for c, g, v, lim in
                zip(table["component"], table["region"], table.get(f"log_{r}", []), table.get(f"limit_{r}", []))}
        image(f"LOG_{r}", per_bin(vals), "dex", f"log10 {r} (NaN: limit or undefined)")
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)
