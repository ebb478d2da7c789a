"""Emission-line ratios of the ISM and CGM regions (SPEC section 7, paper Sect. 3.3).

The input is the ``line_fluxes`` table of the line-fitting / dust stage (one
row per component x region x line, columns ``id, component, region, grating,
line, flux, flux_err, snr, detected, upper_limit, flux_dustcorr,
flux_dustcorr_err, ebv_gas, ebv_gas_err, velocity_kms, sigma_kms``) and the
``samples`` table (``id, logmstar, merger``).  The output of
:func:`compute_ratios` is one row per component x region x ratio with the
columns :data:`RATIO_COLUMNS`.

Ratios
------
========  ==========================================  =================
name      definition                                  fluxes
========  ==========================================  =================
O3        [O III]5007 / Hb                            dust-corrected
O2        [O II]3728 / Hb                             dust-corrected
O32       [O III]5007 / [O II]3728                    dust-corrected
R23       ([O III]4959 + [O III]5007 + [O II]3728)/Hb  dust-corrected
N2        [N II]6583 / Ha                             dust-corrected
N2O2      [N II]6583 / [O II]3728                     dust-corrected
BALMER    Ha / Hb                                     observed
CII_HA    [C II] / Ha                                 [C II] as observed,
                                                      Ha dust-corrected
========  ==========================================  =================

[C II] 158 um suffers no dust extinction, so its observed flux is used as is.

Conventions
-----------
Values and errors (the workflow's path, SPEC 7)
    Every ratio is formed in every Monte Carlo realisation from that
    realisation's fluxes (dust-corrected with that realisation's E(B-V), so
    numerator and denominator share it; :func:`realisation_fluxes`).
    ``log_value`` is the median of log10(ratio) over the realisations,
    ``log_p16`` / ``log_p84`` its 16th / 84th percentiles and ``log_err``
    half their difference.  No standard deviation is taken: the
    distributions are skewed and heavy-tailed.  A realisation whose
    numerator is <= 0 (denominator > 0) has log ratio -inf, one whose
    denominator is <= 0 (numerator > 0) +inf: they are values of the
    distribution (its bottom and top ranks), so they move the percentiles as
    such and are never dropped; a realisation with both <= 0 (or a failed
    fit) carries no information and is left out
    (:func:`log_ratio_realisations`, :func:`ismcgm.mc.percentiles`).  Lines
    tied in the fit (:data:`ismcgm.instrument.TIED_RATIOS`) are tied per
    realisation too.
Values and errors without realisations
    :func:`compute_ratios` without ``realisations`` (the noiseless truth of
    the validation, unit tests) uses the median fluxes and propagates the
    1-sigma flux errors linearly,
    ``sigma_log10(N/D) = (1/ln 10) sqrt((sigma_N/N)^2 + (sigma_D/D)^2)``
    (tied lines add linearly inside a sum), with ``log_p16``/``log_p84`` =
    value -+ ``log_err``.
Limits
    A line is a limit when ``detected`` is False; its value is the 3-sigma
    ``upper_limit``.  For dust-corrected ratios the limit is scaled by the
    line's dust-correction factor ``A = flux_dustcorr / flux`` (the factor
    the dust stage applied), or, where that is undefined (flux <= 0 or
    NaN, common for non-detections), by ``A = 10**(0.4 k(lambda)
    E(B-V)_gas)`` with the Calzetti et al. (2000) curve (R_V = 4.05) and
    ``ebv_gas`` of the same component and region (negative or NaN E(B-V):
    no correction, as in SPEC section 6).  A line tied to a detected
    reference line (e.g. [O III]4959 to [O III]5007) is not treated as a
    limit: the tie fixes its flux to ``ratio x reference`` (and its error
    likewise).  A sum of lines (R23 numerator) is a limit when any of its
    terms is a limit; its value is then the sum of the detected fluxes and
    the limits.  Numerator limit -> ``upper`` (value = log of limit /
    denominator); denominator limit -> ``lower``; both -> ``undefined``
    (NaN).  A missing line (e.g. no [C II] cube) also gives ``undefined``.
    Limit rows have ``log_err`` = NaN.
Unknown dust
    Where Hα or Hβ is not detected the Balmer decrement does not constrain
    the dust and no correction is applied (``ebv_method = none``,
    :func:`ismcgm.linefluxes.gather`); the true E(B-V) is >= 0, so a
    dust-corrected ratio is then bounded by its uncorrected value on one
    side: an ``upper`` limit where the numerator's lines are less extincted
    than the denominator's (O32, N2O2, CII_HA), a ``lower`` one where they
    are more, combined with the flux limits as above (``upper`` + ``lower``
    -> ``undefined``; mixed numerators, R23 and Hβ-free sums, -> ``undefined``).
    The reddening-insensitive ratios, whose lines' Calzetti k differ by less
    than :data:`DUST_INSENSITIVE_DK` (N2, O3), keep their values.
Low-S/N [N II]
    ``nii_lowsn`` is True for N2 and N2O2 when the S/N of [N II]6583 is
    below :data:`NII_LOWSN_SNR` (= 5) or not finite; such points are kept in
    the statistics (SPEC section 8) and drawn translucent in Fig. 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ismcgm import instruments
from ismcgm.dust import calzetti_k, k_line
from ismcgm.instrument import LINE_WAVELENGTHS, TIED_RATIOS
from ismcgm.mc import percentiles

#: Ratio names, in the order used by every table and figure.
RATIOS = ("O3", "O2", "O32", "R23", "N2", "N2O2", "BALMER", "CII_HA")

#: Columns of the ratio table returned by :func:`compute_ratios`.
RATIO_COLUMNS = (
    "id",
    "component",
    "region",
    "ratio",
    "log_value",
    "log_err",
    "limit",
    "nii_lowsn",
    "logmstar",
    "merger",
    "log_p16",
    "log_p84",
)

#: Allowed values of the ``limit`` column.
LIMIT_KINDS = ("none", "upper", "lower", "undefined")

#: Ratios flagged when [N II]6583 has low S/N.
NII_RATIOS = ("N2", "N2O2")

#: S/N of [N II]6583 below which N2 / N2O2 are flagged ``nii_lowsn``.
NII_LOWSN_SNR = 5.0

#: Lines that do not suffer dust extinction (far-IR).
UNEXTINCTED_LINES = ("CII",)


#: Columns the ratios need: a subset of the ``line_fluxes.csv`` contract
#: (:data:`ismcgm.linefluxes.LINE_FLUX_COLUMNS`), also met by the [C II] rows.
#: The measurement columns shared by every line-flux table (NIRSpec lines and [C II]).
MEASUREMENT_COLUMNS = ("id", "component", "region", "line", "flux", "flux_err", "snr", "detected", "upper_limit")

REQUIRED_COLUMNS = MEASUREMENT_COLUMNS + (
    "flux_dustcorr",
    "flux_dustcorr_err",
    "ebv_gas",
)

_KEYS = ["id", "component", "region"]
_DETECTED, _LIMIT, _MISSING = "detected", "limit", "missing"


@dataclass(frozen=True)
class RatioDefinition:
    """Definition of one line ratio.

    Attributes
    ----------
    numerator, denominator : tuple of str
        Line names summed in the numerator and the denominator.
    dust_corrected : bool
        Use the dust-corrected fluxes (lines in :data:`UNEXTINCTED_LINES`
        always use the observed flux).
    """

    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    dust_corrected: bool = True


#: Definitions of :data:`RATIOS` (SPEC section 7).
RATIO_DEFINITIONS = {
    "O3": RatioDefinition(("OIII5007",), ("HB",)),
    "O2": RatioDefinition(("OII3728",), ("HB",)),
    "O32": RatioDefinition(("OIII5007",), ("OII3728",)),
    "R23": RatioDefinition(("OIII4959", "OIII5007", "OII3728"), ("HB",)),
    "N2": RatioDefinition(("NII6583",), ("HA",)),
    "N2O2": RatioDefinition(("NII6583",), ("OII3728",)),
    "BALMER": RatioDefinition(("HA",), ("HB",), dust_corrected=False),
    "CII_HA": RatioDefinition(("CII",), ("HA",)),
}


# ---------------------------------------------------------------------------
# dust-correction factor for limits
# ---------------------------------------------------------------------------
def dust_factor(line, ebv_gas):
    """Dust-correction factor ``10**(0.4 k(lambda) E(B-V)_gas)`` of a line.

    Parameters
    ----------
    line : str
        Line name (:mod:`ismcgm.instrument`); lines in
        :data:`UNEXTINCTED_LINES` have factor 1.
    ebv_gas : float or array_like
        Nebular colour excess; negative or NaN values mean no correction.

    Returns
    -------
    numpy.ndarray
        Multiplicative correction factor (>= 1).
    """
    ebv = np.asarray(ebv_gas, dtype=float)
    ebv = np.where(np.isfinite(ebv) & (ebv > 0), ebv, 0.0)
    if line in UNEXTINCTED_LINES:
        return np.ones_like(ebv)
    k = calzetti_k(LINE_WAVELENGTHS[line] / 1e4)  # ismcgm.dust (one definition)
    return 10.0 ** (0.4 * k * ebv)


def _limit_factor(rows: pd.DataFrame, line: str) -> np.ndarray:
    """Factor turning an observed limit into a dust-corrected one (see module doc)."""
    flux = rows["flux"].to_numpy(float)
    corr = rows["flux_dustcorr"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        applied = corr / flux
    ok = np.isfinite(applied) & (flux > 0) & (applied > 0)
    return np.where(ok, applied, dust_factor(line, rows["ebv_gas"].to_numpy(float)))


# ---------------------------------------------------------------------------
# per-line terms
# ---------------------------------------------------------------------------
def as_bool(values) -> np.ndarray:
    """Boolean array from a column that may hold NaN/None (taken as False)."""
    return pd.Series(values).astype("boolean").fillna(False).to_numpy(bool)


def _check_line_fluxes(line_fluxes: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in line_fluxes.columns]
    if missing:
        raise ValueError(f"line_fluxes lacks the columns {missing}")
    dup = line_fluxes.duplicated(_KEYS + ["line"])
    if dup.any():
        bad = line_fluxes.loc[dup, _KEYS + ["line"]].head(5).to_dict("records")
        raise ValueError(
            "line_fluxes has more than one row per component x region x line "
            f"(choose one grating per line upstream), e.g. {bad}"
        )


def line_terms(line_fluxes: pd.DataFrame, line: str, dust_corrected: bool) -> pd.DataFrame:
    """Value, 1-sigma error and state of one line for every component x region.

    Parameters
    ----------
    line_fluxes : pandas.DataFrame
        The line-flux table (see module doc).
    line : str
        Line name.
    dust_corrected : bool
        Use ``flux_dustcorr`` (and dust-corrected limits) instead of ``flux``.
        Ignored for lines in :data:`UNEXTINCTED_LINES`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(id, component, region)`` over all component x region
        pairs of ``line_fluxes``, with columns ``value`` (flux, or the limit
        for non-detections), ``err`` (1-sigma, NaN for limits) and ``state``
        (``detected``, ``limit`` or ``missing``).
    """
    index = pd.MultiIndex.from_frame(line_fluxes[_KEYS].drop_duplicates())
    rows = line_fluxes[line_fluxes["line"] == line].set_index(_KEYS)
    corrected = dust_corrected and line not in UNEXTINCTED_LINES
    value_col, err_col = ("flux_dustcorr", "flux_dustcorr_err") if corrected else ("flux", "flux_err")

    detected = as_bool(rows["detected"])
    limit = rows["upper_limit"].to_numpy(float)
    if corrected:
        limit = limit * _limit_factor(rows, line)
    value = np.where(detected, rows[value_col].to_numpy(float), limit)
    err = np.where(detected, rows[err_col].to_numpy(float), np.nan)
    usable = np.isfinite(value) & (value > 0)
    state = np.where(~usable, _MISSING, np.where(detected, _DETECTED, _LIMIT))

    out = pd.DataFrame({"value": value, "err": err, "state": state}, index=rows.index)
    out = out.reindex(index)
    out["state"] = out["state"].fillna(_MISSING)
    return out


def _tied_terms(line_fluxes, line, dust_corrected) -> pd.DataFrame:
    """Line terms with the fit's flux ties applied (see module doc, Limits)."""
    term = line_terms(line_fluxes, line, dust_corrected)
    if line not in TIED_RATIOS:
        return term
    ref_line, factor = TIED_RATIOS[line]
    ref = line_terms(line_fluxes, ref_line, dust_corrected)
    use_ref = (term["state"] != _DETECTED) & (ref["state"] == _DETECTED)
    term.loc[use_ref, ["value", "err"]] = ref.loc[use_ref, ["value", "err"]].to_numpy() * factor
    term.loc[use_ref, "state"] = _DETECTED
    return term


def _correlation_group(line: str, lines: tuple[str, ...]) -> str:
    """Lines tied to another line of the same sum share that line's group."""
    if line in TIED_RATIOS and TIED_RATIOS[line][0] in lines:
        return TIED_RATIOS[line][0]
    return line


def sum_terms(line_fluxes: pd.DataFrame, lines: tuple[str, ...], dust_corrected: bool) -> pd.DataFrame:
    """Sum of several lines (value, error, state) per component x region.

    The sum is ``missing`` if any term is missing, a ``limit`` if any term is
    a limit (value = detected fluxes + limits), else ``detected``.  Errors of
    tied lines add linearly, independent groups in quadrature.

    Parameters
    ----------
    line_fluxes : pandas.DataFrame
        The line-flux table.
    lines : tuple of str
        Lines to sum.
    dust_corrected : bool
        See :func:`line_terms`.

    Returns
    -------
    pandas.DataFrame
        Same layout as :func:`line_terms`.
    """
    terms = {line: _tied_terms(line_fluxes, line, dust_corrected) for line in lines}
    first = next(iter(terms.values()))
    value = sum(t["value"] for t in terms.values())
    group_err: dict[str, pd.Series] = {}
    for line, t in terms.items():
        g = _correlation_group(line, lines)
        group_err[g] = group_err.get(g, 0.0) + t["err"]
    err = np.sqrt(sum(e**2 for e in group_err.values()))
    states = pd.concat([t["state"] for t in terms.values()], axis=1)
    state = np.where(
        (states == _MISSING).any(axis=1),
        _MISSING,
        np.where((states == _LIMIT).any(axis=1), _LIMIT, _DETECTED),
    )
    out = pd.DataFrame({"value": value, "err": err, "state": state}, index=first.index)
    out.loc[out["state"] != _DETECTED, "err"] = np.nan
    return out


# ---------------------------------------------------------------------------
# ratios
# ---------------------------------------------------------------------------
def log_ratio(num, num_err, num_state, den, den_err, den_state):
    """log10 of a ratio with its propagated error and limit kind.

    Parameters
    ----------
    num, num_err, den, den_err : array_like
        Numerator / denominator values (flux or limit) and 1-sigma errors.
    num_state, den_state : array_like of str
        ``detected``, ``limit`` or ``missing`` for each term.

    Returns
    -------
    log_value, log_err : numpy.ndarray
        log10(num/den) and its linear-propagation error
        ``(1/ln 10) sqrt((num_err/num)^2 + (den_err/den)^2)`` (NaN for limits
        and undefined ratios).
    limit : numpy.ndarray of str
        ``none``, ``upper``, ``lower`` or ``undefined``.
    """
    num, num_err, den, den_err = (np.asarray(a, dtype=float) for a in (num, num_err, den, den_err))
    num_state, den_state = np.asarray(num_state), np.asarray(den_state)
    undefined = (num_state == _MISSING) | (den_state == _MISSING)
    undefined |= (num_state == _LIMIT) & (den_state == _LIMIT)
    limit = np.select(
        [undefined, num_state == _LIMIT, den_state == _LIMIT],
        ["undefined", "upper", "lower"],
        default="none",
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_value = np.log10(num / den)
        log_err = np.sqrt((num_err / num) ** 2 + (den_err / den) ** 2) / np.log(10.0)
    log_value = np.where(limit == "undefined", np.nan, log_value)
    log_err = np.where(limit == "none", log_err, np.nan)
    return log_value, log_err, limit


def nii_lowsn_flags(line_fluxes: pd.DataFrame, threshold: float = NII_LOWSN_SNR) -> pd.Series:
    """Low-S/N [N II]6583 flag per component x region.

    Parameters
    ----------
    line_fluxes : pandas.DataFrame
        The line-flux table.
    threshold : float
        S/N below which the flag is set (missing or NaN S/N also sets it).

    Returns
    -------
    pandas.Series of bool
        Indexed by ``(id, component, region)``.
    """
    index = pd.MultiIndex.from_frame(line_fluxes[_KEYS].drop_duplicates())
    nii = line_fluxes[line_fluxes["line"] == "NII6583"].set_index(_KEYS)["snr"]
    snr = nii.reindex(index).to_numpy(float)
    return pd.Series(~(snr >= threshold), index=index, name="nii_lowsn")


#: Largest spread of the Calzetti k of a ratio's lines for which an unknown dust correction is ignored
#: (module doc, "Unknown dust"): N2 (Δk 0.02) and O3 (0.14), at most 0.06 dex for E(B-V) = 1.
DUST_INSENSITIVE_DK = 0.2


def dust_direction(rdef: RatioDefinition) -> str:
    """How a dust correction moves a ratio: ``up``, ``down``, ``none`` (not corrected, or reddening-insensitive)
    or ``mixed`` (numerator and denominator lines' k interleave)."""
    if not rdef.dust_corrected:
        return "none"
    k = {ln: 0.0 if ln in UNEXTINCTED_LINES else float(k_line(ln)) for ln in rdef.numerator + rdef.denominator}
    num, den = [k[ln] for ln in rdef.numerator], [k[ln] for ln in rdef.denominator]
    if max(k.values()) - min(k.values()) < DUST_INSENSITIVE_DK:
        return "none"
    if min(num) >= max(den):
        return "up"
    if max(num) <= min(den):
        return "down"
    return "mixed"


def _unknown_dust_limits(line_fluxes: pd.DataFrame, rdef: RatioDefinition, index, limit) -> np.ndarray:
    """``limit`` with the rule of the module doc ("Unknown dust") for the regions with ``ebv_method = none``."""
    direction = dust_direction(rdef)
    if direction == "none" or "ebv_method" not in line_fluxes.columns:
        return limit
    method = line_fluxes.drop_duplicates(_KEYS).set_index(_KEYS)["ebv_method"].reindex(index)
    unknown = (method == "none").to_numpy(bool)
    bound = {"down": "upper", "up": "lower"}.get(direction)
    out = np.asarray(limit, dtype=object).copy()
    for i in np.flatnonzero(unknown):
        if out[i] == "undefined":
            continue
        out[i] = bound if bound is not None and out[i] in ("none", bound) else "undefined"
    return out.astype(str)


def compute_ratio(line_fluxes: pd.DataFrame, name: str, realisations: pd.DataFrame | None = None) -> pd.DataFrame:
    """One ratio for every component x region (no sample columns).

    Parameters
    ----------
    line_fluxes : pandas.DataFrame
        The line-flux table.
    name : str
        A key of :data:`RATIO_DEFINITIONS`.
    realisations : pandas.DataFrame, optional
        Per-realisation fluxes (:func:`realisation_fluxes`); then the values
        and errors of the ratios without limits are the percentiles of the
        ratio formed realisation by realisation (see module doc).

    Returns
    -------
    pandas.DataFrame
        Columns ``id, component, region, ratio, log_value, log_err, log_p16,
        log_p84, limit, nii_lowsn``.
    """
    rdef = RATIO_DEFINITIONS[name]
    num = sum_terms(line_fluxes, rdef.numerator, rdef.dust_corrected)
    den = sum_terms(line_fluxes, rdef.denominator, rdef.dust_corrected)
    log_value, log_err, limit = log_ratio(
        num["value"], num["err"], num["state"], den["value"], den["err"], den["state"]
    )
    limit = _unknown_dust_limits(line_fluxes, rdef, num.index, limit)
    log_err = np.where(limit == "none", log_err, np.nan)
    p16, p84 = log_value - log_err, log_value + log_err
    if realisations is not None:
        mc_log = realisation_log_ratio(line_fluxes, realisations, rdef, num.index)
        q16, q50, q84 = percentiles(mc_log, axis=1)
        use = limit == "none"
        log_value = np.where(use, q50, log_value)
        p16, p84 = np.where(use, q16, np.nan), np.where(use, q84, np.nan)
        with np.errstate(invalid="ignore"):
            log_err = np.where(use, 0.5 * (q84 - q16), np.nan)
    out = num.index.to_frame(index=False)
    out["ratio"] = name
    out["log_value"] = log_value
    out["log_err"] = log_err
    out["log_p16"] = p16
    out["log_p84"] = p84
    out["limit"] = limit
    lowsn = nii_lowsn_flags(line_fluxes).reindex(num.index).to_numpy(bool)
    out["nii_lowsn"] = lowsn if name in NII_RATIOS else False
    return out


# ---------------------------------------------------------------------------
# ratios realisation by realisation (SPEC 7)
# ---------------------------------------------------------------------------
#: Columns of the per-realisation flux table the ratios take (:func:`realisation_fluxes`).
REALISATION_COLUMNS = ("id", "component", "region", "line", "realisation", "flux", "flux_dustcorr")


def realisation_fluxes(line_realisations: pd.DataFrame, cii_realisations: pd.DataFrame | None = None) -> pd.DataFrame:
    """One flux per component x region x line x realisation, for :func:`compute_ratios`.

    Parameters
    ----------
    line_realisations : pandas.DataFrame
        ``results/mc/<variant>/realisations.parquet`` (every grating); the
        preferred grating of each line is kept (:func:`preferred_grating`).
    cii_realisations : pandas.DataFrame, optional
        ``results/cii/<variant>/<id>_realisations.parquet`` rows
        (:func:`ismcgm.cii.realisation_table`).  [C II] enters at the IFU
        resolution (``flux_native``) and is not extincted.  Its noise is
        independent of the IFU noise, so IFU realisation ``i`` is paired with
        [C II] realisation ``i mod n_cii`` (any pairing of independent draws
        is a draw of the joint distribution).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REALISATION_COLUMNS`.
    """
    keys = ("component", "region", "line", "realisation")
    real = preferred_grating(line_realisations, keys=keys).loc[:, list(REALISATION_COLUMNS)]
    if cii_realisations is None or not len(cii_realisations):
        return real.reset_index(drop=True)
    ifu = np.sort(real["realisation"].unique())
    parts = []
    for (gid, comp, region), grp in cii_realisations.groupby(["id", "component", "region"], sort=False):
        native = grp.sort_values("realisation")["flux_native"].to_numpy(float)
        if not native.size:
            continue
        flux = native[ifu % native.size]
        parts.append(pd.DataFrame({"id": gid, "component": comp, "region": region, "line": "CII",
                                   "realisation": ifu, "flux": flux, "flux_dustcorr": flux}))
    return pd.concat([real] + parts, ignore_index=True).loc[:, list(REALISATION_COLUMNS)]


def _realisation_matrix(realisations: pd.DataFrame, line: str, dust_corrected: bool, index) -> np.ndarray:
    """Fluxes of one line, shape (len(index), n_realisations); NaN where absent."""
    corrected = dust_corrected and line not in UNEXTINCTED_LINES
    col = "flux_dustcorr" if corrected else "flux"
    rows = realisations[realisations["line"] == line]
    n_real = int(realisations["realisation"].max()) + 1 if len(realisations) else 0
    wide = rows.set_index(_KEYS + ["realisation"])[col].unstack("realisation")
    wide = wide.reindex(index=index, columns=range(n_real))
    return wide.to_numpy(float)


def realisation_sum(line_fluxes, realisations, lines, dust_corrected, index) -> np.ndarray:
    """Per-realisation sum of ``lines`` for each region of ``index``, with the fit's ties as in
    :func:`_tied_terms`: shape (len(index), n_realisations).

    Parameters
    ----------
    line_fluxes : DataFrame
        The line-flux table (its detection states decide the ties).
    realisations : DataFrame
        :func:`realisation_fluxes` of it.
    lines : sequence of str
        The lines summed.
    dust_corrected : bool
        Sum ``flux_dustcorr`` instead of ``flux``.
    index : pandas.MultiIndex
        ``(id, component, region)`` of the rows.
    """
    total = 0.0
    for line in lines:
        values = _realisation_matrix(realisations, line, dust_corrected, index)
        if line in TIED_RATIOS:
            ref_line, factor = TIED_RATIOS[line]
            term = line_terms(line_fluxes, line, dust_corrected).reindex(index)
            ref = line_terms(line_fluxes, ref_line, dust_corrected).reindex(index)
            use_ref = ((term["state"] != _DETECTED) & (ref["state"] == _DETECTED)).to_numpy(bool)
            if use_ref.any():
                ref_values = _realisation_matrix(realisations, ref_line, dust_corrected, index)
                values = np.where(use_ref[:, None], factor * ref_values, values)
        total = total + values
    return total


def log_ratio_realisations(num, den) -> np.ndarray:
    """log10(num/den) of each realisation, with the rules for non-positive fluxes.

    ``num > 0, den > 0``: ``log10(num/den)``.  ``num > 0 >= den``: ``+inf``
    (the ratio exceeds every finite value: it counts as the top of the
    distribution).  ``num <= 0 < den``: ``-inf`` (the bottom).  Both <= 0, or
    a failed fit: NaN (no information; left out of the percentiles).
    """
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(num / den)
    out = np.where((num > 0) & (den <= 0), np.inf, out)
    out = np.where((num <= 0) & (den > 0), -np.inf, out)
    out = np.where((num <= 0) & (den <= 0), np.nan, out)
    return out


def realisation_log_ratio(line_fluxes, realisations, rdef: RatioDefinition, index) -> np.ndarray:
    """log10 of a ratio in every realisation, shape (len(index), n_realisations)."""
    num = realisation_sum(line_fluxes, realisations, rdef.numerator, rdef.dust_corrected, index)
    den = realisation_sum(line_fluxes, realisations, rdef.denominator, rdef.dust_corrected, index)
    return log_ratio_realisations(num, den)


#: Header comment of ``ratios.csv``.
TABLE_COMMENT = (
    "ISM and CGM line ratios (SPEC 7) from dust-corrected fluxes (BALMER: observed Ha/Hb).\n"
    "Ratios formed per Monte Carlo realisation: log_value = median of log10(ratio), log_p16/log_p84 its\n"
    "16th/84th percentiles, log_err = (log_p84 - log_p16)/2; limits from the line detections;\n"
    "limit: none | upper (numerator limit) | lower (denominator limit) | undefined (both or missing)."
)

#: Grating preference for lines measured in two gratings (SPEC 5: use G395M), from the setups'
#: ranks in :data:`ismcgm.instruments.SETUPS`; ``combined`` (config ``ratios.overlap: combine``,
#: :func:`ismcgm.linefluxes.combine_overlap`) comes first.
GRATING_PREFERENCE = instruments.preference_order(extra_first=("combined",))


def preferred_grating(line_fluxes: pd.DataFrame, keys=("component", "region", "line")) -> pd.DataFrame:
    """Keep one row per ``keys`` (component, region, line): G395M (or G395H) over G235M.

    Hβ and [O III] fall in both gratings at 5.0 < z < 5.3; SPEC 5 uses G395M.
    Pass ``keys`` with ``realisation`` added for per-realisation tables.
    """
    rank = line_fluxes["grating"].map({g: i for i, g in enumerate(GRATING_PREFERENCE)})
    order = line_fluxes.assign(_rank=rank).sort_values("_rank", kind="stable")
    keep = order.drop_duplicates(list(keys), keep="first")
    return keep.drop(columns="_rank").sort_index()


def compute_ratios(
    line_fluxes: pd.DataFrame,
    samples: pd.DataFrame,
    ratios: tuple[str, ...] = RATIOS,
    realisations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """All line ratios of all components and regions (SPEC section 7).

    Parameters
    ----------
    line_fluxes : pandas.DataFrame
        The line-flux table (see module doc).
    samples : pandas.DataFrame
        Sample table with at least ``id, logmstar, merger``.
    ratios : tuple of str
        Ratios to compute, default :data:`RATIOS`.
    realisations : pandas.DataFrame, optional
        Per-realisation fluxes (:func:`realisation_fluxes`): the workflow's
        path (values and errors from the ratio's percentiles over the
        realisations).  Without it the values come from the median fluxes
        and the errors from linear propagation (``log_p16``/``log_p84`` =
        value -+ ``log_err``), e.g. for the noiseless truth.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RATIO_COLUMNS`, one row per component x region x
        ratio (every ratio present, ``undefined`` where a line is missing),
        sorted by id, component, region and ratio order.
    """
    _check_line_fluxes(line_fluxes)
    unknown = [r for r in ratios if r not in RATIO_DEFINITIONS]
    if unknown:
        raise ValueError(f"unknown ratios {unknown}; known: {list(RATIO_DEFINITIONS)}")
    table = pd.concat([compute_ratio(line_fluxes, r, realisations) for r in ratios], ignore_index=True)
    info = samples[["id", "logmstar", "merger"]].drop_duplicates("id")
    table = table.merge(info, on="id", how="left")
    table["merger"] = as_bool(table["merger"])
    table["nii_lowsn"] = table["nii_lowsn"].astype(bool)
    table["ratio"] = pd.Categorical(table["ratio"], categories=list(ratios), ordered=True)
    table = table.sort_values(["id", "component", "region", "ratio"], kind="stable")
    table["ratio"] = table["ratio"].astype(str)
    return table.loc[:, list(RATIO_COLUMNS)].reset_index(drop=True)
