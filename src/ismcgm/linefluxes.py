"""Line fluxes from Monte Carlo realisations: one chunk of fits, and the gather.

The workflow splits the ``mc.n_realisations`` realisations of every
(component, region, grating) spectrum into chunks of ``mc.chunk_size``
(:func:`chunk_realisations`); :func:`fit_chunk` draws and fits one chunk of
one galaxy and grating, :func:`gather` turns all chunks into the line-flux
table (SPEC sections 4-6).

Every realisation is drawn from its own random stream
(:func:`ismcgm.mc.rng_for`) and fitted on its own (the fitter's results for
one realisation do not depend on the others in its batch), so the tables are
bit-identical for any chunk size and core count.

Dust correction (SPEC 6) is done per realisation: E(B-V)_gas from the
Hα/Hβ of realisation *i* (Hβ from the preferred grating, see
:data:`ismcgm.ratios.GRATING_PREFERENCE`), every line of that realisation
corrected with it, and the median and standard deviation taken afterwards.
So the errors of the dust-corrected fluxes and of E(B-V) are Monte Carlo
errors that include the Balmer-decrement uncertainty.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import instrument as ins
from . import mc
from .dust import correct, ebv_from_balmer
from .errors import InputError
from .fit import fit_spectra, three_channel_flux

#: Columns of ``line_fluxes.csv`` (issue contract).
LINE_FLUX_COLUMNS = [
    "id", "component", "region", "grating", "line", "flux", "flux_err", "snr", "detected",
    "upper_limit", "flux_dustcorr", "flux_dustcorr_err", "ebv_gas", "ebv_gas_err", "velocity_kms",
    "sigma_kms",
]

TABLE_COMMENT = (
    "Emission-line fluxes per component, region, grating and line (SPEC 4-6).\n"
    "flux, flux_err, upper_limit, flux_dustcorr, flux_dustcorr_err in erg s^-1 cm^-2;\n"
    "flux = median of the Monte Carlo realisations, flux_err = their standard deviation;\n"
    "upper_limit = 3-sigma limit (three-channel sums) where not detected;\n"
    "dust correction Calzetti (2000) per realisation, E(B-V)_gas from Ha/Hb; velocity_kms, sigma_kms medians [km/s]."
)


def n_chunks(n_realisations: int, chunk_size: int) -> int:
    """Number of Monte Carlo chunks."""
    return math.ceil(n_realisations / chunk_size)


def chunk_realisations(chunk: int, n_realisations: int, chunk_size: int) -> list[int]:
    """Realisation indices of chunk ``chunk``."""
    return list(range(chunk * chunk_size, min((chunk + 1) * chunk_size, n_realisations)))


def fit_chunk(gid, spectra, z, grating, realisations, seed, fit_cfg, cube_draws=None) -> pd.DataFrame:
    """Draw and fit one chunk of realisations of every region of a galaxy.

    Parameters
    ----------
    gid : str
        Galaxy id.
    spectra : list of (component, region, wave_um, flux, err)
        The nominal extracted spectra.
    z : float
    grating : str
    realisations : list of int
    seed : int
        Global seed.
    fit_cfg : dict
        ``method``, ``continuum_order``, ``n_components``.
    cube_draws : dict, optional
        ``{(component, region): (n_real, n_wave) array}`` of cube-level
        realisations (``mc.level: cube``); default: spectrum-level draws.

    Returns
    -------
    DataFrame
        ``id, component, region, grating, realisation, line, flux, flux3,
        velocity_kms, sigma_kms``.
    """
    if not ins.lines_in_grating(grating, z):
        raise InputError(gid, f"{grating} spectra", f"no emission line falls inside the {grating} coverage at z={z:g}",
                         "check the redshift in the sample table (or leave this grating out)")
    parts = []
    for component, region, wave, flux, err in spectra:
        if cube_draws is not None:
            draws = cube_draws[(component, region)]
        else:
            draws = mc.spectrum_realisations(flux, err, seed, component, region, grating, realisations)
        try:
            res = fit_spectra(wave, draws, err, z, grating, method=fit_cfg["method"],
                              cont_order=fit_cfg["continuum_order"], n_components=fit_cfg["n_components"])
        except ValueError as exc:
            raise InputError(gid, f"{component} {region} {grating} spectrum", str(exc),
                             "check the cube (NaN/ERR) and the mask of this region") from None
        for line in res.lines:
            parts.append(pd.DataFrame({
                "id": gid, "component": component, "region": region, "grating": grating,
                "realisation": np.asarray(realisations, dtype=int), "line": line,
                "flux": res.flux[line], "flux3": three_channel_flux(wave, draws, z, line, grating),
                "velocity_kms": res.velocity_kms, "sigma_kms": res.sigma_kms,
            }))
    return pd.concat(parts, ignore_index=True)


def _dust(real: pd.DataFrame, intrinsic: float) -> pd.DataFrame:
    """Per-realisation E(B-V)_gas and dust-corrected fluxes (see module docstring)."""
    from .ratios import preferred_grating

    pref = preferred_grating(real, keys=("component", "region", "line", "realisation"))
    balmer = pref[pref["line"].isin(["HA", "HB"])].pivot_table(
        index=["component", "region", "realisation"], columns="line", values="flux")
    if {"HA", "HB"} <= set(balmer.columns):
        ebv = pd.Series(ebv_from_balmer(balmer["HA"].to_numpy(), balmer["HB"].to_numpy(), intrinsic),
                        index=balmer.index, name="ebv")
    else:
        ebv = pd.Series(dtype=float, name="ebv")
    real = real.join(ebv, on=["component", "region", "realisation"])
    wave_A = real["line"].map(ins.LINE_WAVELENGTHS).to_numpy()
    e = real["ebv"].to_numpy()
    corr = correct(real["flux"].to_numpy(), wave_A, np.nan_to_num(e, nan=0.0))
    real["flux_dustcorr"] = np.where(np.isfinite(e), corr, np.nan)
    return real


def gather(chunks: pd.DataFrame, detect_snr: float, intrinsic_ha_hb: float):
    """Line-flux table, per-realisation table and grating overlap from all chunks.

    Returns
    -------
    line_fluxes : DataFrame
        :data:`LINE_FLUX_COLUMNS`.
    realisations : DataFrame
        Per realisation: ``component, region, grating, line, realisation,
        flux, flux3, flux_dustcorr, ebv``.
    overlap : DataFrame
        Lines measured in both G235M and G395M/H: ``id, component, region,
        line, flux_g235m, flux_red, red_grating, ratio_red_over_g235m,
        ratio_err``.
    """
    real = chunks.sort_values(["id", "component", "region", "grating", "line", "realisation"], kind="stable")
    real = _dust(real.reset_index(drop=True), intrinsic_ha_hb)
    rows = []
    for (gid, comp, region, grating, line), g in real.groupby(["id", "component", "region", "grating", "line"],
                                                              sort=False):
        s = mc.summarise(g["flux"].to_numpy(), detect_snr, g["flux3"].to_numpy())
        fd, e = g["flux_dustcorr"].to_numpy(), g["ebv"].to_numpy()
        rows.append({
            "id": gid,
            "component": comp, "region": region, "grating": grating, "line": line,
            "flux": s.flux, "flux_err": s.err, "snr": s.snr, "detected": bool(s.detected),
            "upper_limit": s.upper_limit,
            "flux_dustcorr": _nanmedian(fd), "flux_dustcorr_err": _nanstd(fd),
            "ebv_gas": _nanmedian(e), "ebv_gas_err": _nanstd(e),
            "velocity_kms": _nanmedian(g["velocity_kms"].to_numpy()),
            "sigma_kms": _nanmedian(g["sigma_kms"].to_numpy()),
        })
    table = pd.DataFrame(rows, columns=LINE_FLUX_COLUMNS)
    return table, real, grating_overlap(table)


def grating_overlap(table: pd.DataFrame) -> pd.DataFrame:
    """G395M(or H)/G235M flux ratio of lines measured in both gratings (SPEC 5)."""
    blue = table[table["grating"] == "g235m"]
    red = table[table["grating"] != "g235m"]
    m = blue.merge(red, on=["id", "component", "region", "line"], suffixes=("_b", "_r"))
    m = m[m["detected_b"] & m["detected_r"]]
    ratio = m["flux_r"] / m["flux_b"]
    err = ratio * np.hypot(m["flux_err_r"] / m["flux_r"], m["flux_err_b"] / m["flux_b"])
    return pd.DataFrame({"id": m["id"], "component": m["component"], "region": m["region"], "line": m["line"],
                         "flux_g235m": m["flux_b"], "flux_red": m["flux_r"], "red_grating": m["grating_r"],
                         "ratio_red_over_g235m": ratio, "ratio_err": err})


def _nanmedian(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else np.nan


def _nanstd(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanstd(a, ddof=1)) if np.isfinite(a).sum() > 1 else np.nan
