"""The [C II] tables: line-flux rows, spectra, and the [C II]/Ha ratio table of Fig. 6."""

from __future__ import annotations

import numpy as np

from .spill import native_resolution

#: Columns of :func:`cii_ratio_table` (the first ten are the contract).
RATIO_TABLE_COLUMNS = (
    "id",
    "component",
    "region",
    "cii_flux",
    "cii_flux_err",
    "detected",
    "cii_ha",
    "cii_ha_err",
    "delta_balmer",
    "delta_balmer_limit",
    "cii_upper_limit",
    "ha_flux",
    "ha_flux_err",
    "cii_flux_native",
    "cii_flux_native_err",
    "cii_ha_p16",
    "cii_ha_p84",
)


def cii_line_flux_rows(cii_table):
    """The [C II] rows in the ``line_fluxes`` format of :mod:`ismcgm.ratios`.

    [C II] is not extincted: ``flux_dustcorr = flux``; ``grating = 'alma'``.
    The spill-corrected columns (``flux_native``, ``flux_native_err``,
    ``upper_limit_native``; :func:`spill_corrected`) are kept when present.
    """
    import pandas as pd

    df = cii_table
    extra = {c: df[c] for c in ("flux_native", "flux_native_err", "upper_limit_native") if c in df.columns}
    return pd.DataFrame({
        "id": df["id"],
        "component": df["component"],
        "region": df["region"],
        "grating": "alma",
        "line": "CII",
        "flux": df["flux"],
        "flux_err": df["flux_err"],
        "snr": df["snr"],
        "detected": df["detected"].astype(bool),
        "upper_limit": df["upper_limit"],
        "flux_dustcorr": df["flux"],
        "flux_dustcorr_err": df["flux_err"],
        "ebv_gas": np.nan,
        "ebv_gas_err": np.nan,
        "velocity_kms": df["velocity_kms"],
        "sigma_kms": df["sigma_kms"],
        **extra,
    })


def spectra_table(spectra: dict, galaxy: str):
    """Long table of extracted spectra and nominal models (for plots): one row per channel."""
    import pandas as pd

    parts = []
    for (component, region), (spec, fit, _) in spectra.items():
        parts.append(pd.DataFrame({
            "id": galaxy, "component": component, "region": region,
            "velocity_kms": spec.velocity, "flux_jy": spec.flux_jy, "model_jy": fit.model(spec.velocity),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["id", "component", "region", "velocity_kms", "flux_jy", "model_jy"])


# ---------------------------------------------------------------------------
# [C II] / Ha table
# ---------------------------------------------------------------------------
def _as_lookup(obj, value_cols, what):
    """``{(id, component, region): tuple(values)}`` from a dict or DataFrame."""
    if isinstance(obj, dict):
        return {tuple(k): (v if isinstance(v, tuple) else (v,)) for k, v in obj.items()}
    df = obj
    for cols in value_cols:
        if all(c in df.columns for c in cols):
            return {(str(r["id"]), str(r["component"]), str(r["region"])): tuple(r[c] for c in cols)
                    for _, r in df.iterrows()}
    raise ValueError(f"{what}: need columns id, component, region and one of {value_cols}")


def cii_ratio_table(cii, ha, balmer, snr_detect: float = 3.0):
    """F[C II] / F(Ha, dust-corrected) per region and Delta log(Ha/Hb)_CGM-ISM per component.

    Parameters
    ----------
    cii : DataFrame or dict
        Per region ``id, component, region, flux, flux_err`` [erg/s/cm2]
        (+ ``detected``, ``upper_limit``: the :func:`measure_galaxy` table),
        or ``{(id, component, region): (flux, flux_err)}`` (then detected =
        ``flux / flux_err >= snr_detect``, limit 3 ``flux_err``).
    ha : DataFrame or dict
        Dust-corrected Ha: a ``line_fluxes`` table (rows ``line == 'HA'``,
        ``flux_dustcorr``, ``flux_dustcorr_err``) or columns ``flux, flux_err``,
        or ``{key: (flux, err)}``.
    balmer : DataFrame or dict
        Observed Balmer decrement: the ratio table (rows ``ratio ==
        'BALMER'``, ``log_value`` and ``limit``), or columns ``ha_hb``
        (linear), or ``{key: ha_hb}``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RATIO_TABLE_COLUMNS`.  ``cii_ha`` is linear; for a
        non-detected [C II] it is the 3-sigma upper limit over Ha with
        ``cii_ha_err`` NaN and ``detected`` False.  Errors are first-order:
        ``cii_ha sqrt((s_C/C)^2 + (s_Ha/Ha)^2)``.  ``delta_balmer =
        log10(Ha/Hb)_CGM - log10(Ha/Hb)_ISM`` of the component (same value on
        both rows; NaN when a region is missing); ``delta_balmer_limit`` is
        True when either region's Balmer decrement is a limit or undefined.
        When ``cii`` has the spill-corrected columns (:func:`spill_corrected`)
        ``cii_ha`` uses ``flux_native`` (and its error and limit): both lines
        at the IFU resolution.
    """
    import pandas as pd

    if isinstance(ha, pd.DataFrame) and "line" in ha.columns:
        ha = ha[ha["line"] == "HA"]
    ha_map = _as_lookup(ha, [("flux_dustcorr", "flux_dustcorr_err"), ("flux", "flux_err")], "ha")
    if isinstance(balmer, pd.DataFrame) and "ratio" in balmer.columns:
        balmer = balmer[balmer["ratio"] == "BALMER"]
    if isinstance(balmer, pd.DataFrame) and "log_value" in balmer.columns:
        if "limit" not in balmer.columns:
            balmer = balmer.assign(limit="none")
        bal_map = {k: (v[0], v[1]) for k, v in _as_lookup(balmer, [("log_value", "limit")], "balmer").items()}
    elif isinstance(balmer, pd.DataFrame):
        bal_map = {k: (np.log10(v[0]) if v[0] > 0 else np.nan, "none")
                   for k, v in _as_lookup(balmer, [("ha_hb",)], "balmer").items()}
    else:
        bal_map = {tuple(k): (np.log10(v) if v > 0 else np.nan, "none") for k, v in balmer.items()}

    if isinstance(cii, dict):
        rows = [{"id": k[0], "component": k[1], "region": k[2], "flux": v[0], "flux_err": v[1]} for k, v in cii.items()]
        cii = pd.DataFrame(rows)
    cii = cii.copy()
    if "detected" not in cii.columns:
        cii["detected"] = (cii["flux"] / cii["flux_err"]) >= snr_detect
    if "upper_limit" not in cii.columns:
        cii["upper_limit"] = 3.0 * cii["flux_err"]
    native = native_resolution(cii)

    out = []
    for (_, r), (_, nat) in zip(cii.iterrows(), native.iterrows()):
        key = (str(r["id"]), str(r["component"]), str(r["region"]))
        hf, he = (float(x) for x in ha_map.get(key, (np.nan, np.nan)))
        c, ce = float(nat["flux"]), float(nat["flux_err"])
        det = bool(r["detected"])
        ul = float(nat["upper_limit"]) if np.isfinite(nat["upper_limit"]) else 3.0 * ce
        with np.errstate(invalid="ignore", divide="ignore"):
            if not (np.isfinite(hf) and hf > 0):
                ratio, rerr = np.nan, np.nan
            elif det:
                ratio = c / hf
                rerr = abs(ratio) * np.sqrt((ce / c) ** 2 + (he / hf) ** 2)
            else:
                ratio, rerr = ul / hf, np.nan
        comp = key[1]
        ism = bal_map.get((key[0], comp, "ISM"), (np.nan, "undefined"))
        cgm = bal_map.get((key[0], comp, "CGM"), (np.nan, "undefined"))
        delta = float(cgm[0]) - float(ism[0])
        lim = not (str(ism[1]) == "none" and str(cgm[1]) == "none") or not np.isfinite(delta)
        out.append({
            "id": key[0], "component": comp, "region": key[2],
            "cii_flux": float(r["flux"]), "cii_flux_err": float(r["flux_err"]), "detected": det,
            "cii_ha": ratio, "cii_ha_err": rerr,
            "delta_balmer": delta, "delta_balmer_limit": bool(lim),
            "cii_upper_limit": np.nan if det else ul,
            "ha_flux": hf, "ha_flux_err": he, "cii_flux_native": c, "cii_flux_native_err": ce,
            "cii_ha_p16": ratio - rerr, "cii_ha_p84": ratio + rerr,
        })
    return pd.DataFrame(out, columns=list(RATIO_TABLE_COLUMNS))


def with_ratio_percentiles(table, ratios_df):
    """``cii_ha`` of :func:`cii_ratio_table` replaced by the Monte Carlo ``CII_HA`` of the ratio table.

    Where ``ratios.csv`` has ``CII_HA`` without a limit, ``cii_ha`` =
    ``10**log_value`` (the median over the realisations of [C II] / dust-corrected
    Ha), ``cii_ha_p16`` / ``cii_ha_p84`` = ``10**log_p16`` / ``10**log_p84``
    and ``cii_ha_err`` half their difference, so that Fig. 6 and the
    statistics use the same numbers.  Limits keep the values of
    :func:`cii_ratio_table`.
    """
    keys = ["id", "component", "region"]
    mc = ratios_df[(ratios_df["ratio"] == "CII_HA") & (ratios_df["limit"] == "none")]
    mc = mc[keys + ["log_value", "log_p16", "log_p84"]].astype({k: str for k in keys})
    out = table.astype({k: str for k in keys}).merge(mc, on=keys, how="left")
    use = np.isfinite(out["log_value"].to_numpy(float))
    p16, p84 = 10.0 ** out["log_p16"].to_numpy(float), 10.0 ** out["log_p84"].to_numpy(float)
    out["cii_ha"] = np.where(use, 10.0 ** out["log_value"].to_numpy(float), out["cii_ha"])
    out["cii_ha_p16"] = np.where(use, p16, out["cii_ha_p16"])
    out["cii_ha_p84"] = np.where(use, p84, out["cii_ha_p84"])
    out["cii_ha_err"] = np.where(use, 0.5 * (p84 - p16), out["cii_ha_err"])
    return out.loc[:, list(table.columns)]
