"""Tests of ismcgm.ratios on small hand-made line-flux tables."""

import numpy as np
import pandas as pd
import pytest

from ismcgm.ratios import (
    RATIO_COLUMNS,
    RATIOS,
    calzetti_k,
    compute_ratios,
    dust_factor,
    log_ratio,
)

LN10 = np.log(10.0)

# observed fluxes and errors [1e-18 erg/s/cm2] of one region; the
# dust-corrected flux is the observed one times FACTOR[line]
OBS = {
    "OII3728": (6.0, 0.6),
    "HB": (4.0, 0.2),
    "OIII4959": (8.0, 0.4),
    "OIII5007": (24.0, 1.2),
    "NII6548": (0.4, 0.2),
    "HA": (12.0, 0.3),
    "NII6583": (1.2, 0.3),
    "SII6716": (1.0, 0.2),
    "SII6731": (0.8, 0.2),
}
EBV = 0.1


def _rows(gid, component, region, obs=OBS, ebv=EBV, undetected=(), snr=None):
    rows = []
    for line, (flux, err) in obs.items():
        factor = float(dust_factor(line, ebv))
        det = line not in undetected
        rows.append(
            {
                "id": gid,
                "component": component,
                "region": region,
                "grating": "g395m",
                "line": line,
                "flux": flux,
                "flux_err": err,
                "snr": (snr or {}).get(line, flux / err),
                "detected": det,
                "upper_limit": np.nan if det else 3 * err,
                "flux_dustcorr": flux * factor,
                "flux_dustcorr_err": err * factor,
                "ebv_gas": ebv,
                "ebv_gas_err": 0.01,
                "velocity_kms": 0.0,
                "sigma_kms": 80.0,
            }
        )
    return rows


def _table(*row_lists):
    return pd.DataFrame([r for rows in row_lists for r in rows])


SAMPLES = pd.DataFrame({"id": ["g1", "g2"], "logmstar": [9.8, 10.6], "merger": [False, True]})


def _get(df, ratio, region="ISM", component="g1"):
    sel = df[(df["ratio"] == ratio) & (df["region"] == region) & (df["component"] == component)]
    assert len(sel) == 1
    return sel.iloc[0]


def _corr(line):
    return OBS[line][0] * float(dust_factor(line, EBV)), OBS[line][1] * float(dust_factor(line, EBV))


def test_columns_order_and_sample_join():
    lf = _table(_rows("g1", "g1", "ISM"), _rows("g1", "g1", "CGM"), _rows("g2", "g2_a", "ISM"))
    out = compute_ratios(lf, SAMPLES)
    assert tuple(out.columns) == RATIO_COLUMNS
    assert len(out) == 3 * len(RATIOS)
    assert list(out[(out["component"] == "g1") & (out["region"] == "CGM")]["ratio"]) == list(RATIOS)
    g2 = out[out["id"] == "g2"]
    assert g2["merger"].all() and np.allclose(g2["logmstar"], 10.6)
    assert set(out["limit"]) <= {"none", "upper", "lower", "undefined"}


def test_detected_values_and_linear_errors():
    out = compute_ratios(_table(_rows("g1", "g1", "ISM")), SAMPLES)
    o3, do3 = _corr("OIII5007")
    hb, dhb = _corr("HB")
    row = _get(out, "O3")
    assert row["limit"] == "none"
    assert row["log_value"] == pytest.approx(np.log10(o3 / hb))
    assert row["log_err"] == pytest.approx(np.hypot(do3 / o3, dhb / hb) / LN10)

    # R23: the tied [O III] pair adds errors linearly, [O II] in quadrature
    o4, do4 = _corr("OIII4959")
    o2, do2 = _corr("OII3728")
    num = o4 + o3 + o2
    dnum = np.hypot(do4 + do3, do2)
    row = _get(out, "R23")
    assert row["log_value"] == pytest.approx(np.log10(num / hb))
    assert row["log_err"] == pytest.approx(np.hypot(dnum / num, dhb / hb) / LN10)

    # Balmer decrement from observed fluxes
    row = _get(out, "BALMER")
    assert row["log_value"] == pytest.approx(np.log10(12.0 / 4.0))
    assert row["log_err"] == pytest.approx(np.hypot(0.3 / 12.0, 0.2 / 4.0) / LN10)


def test_limit_kinds():
    upper = _rows("g1", "g1", "ISM", undetected=("OIII5007",))
    lower = _rows("g1", "g1", "CGM", undetected=("HB",))
    both = _rows("g2", "g2_a", "ISM", undetected=("OIII5007", "HB"))
    out = compute_ratios(_table(upper, lower, both), SAMPLES)

    hb, _ = _corr("HB")
    row = _get(out, "O3", "ISM")
    assert row["limit"] == "upper"
    # limit = 3 sigma observed x the line's dust factor
    assert row["log_value"] == pytest.approx(np.log10(3 * OBS["OIII5007"][1] * dust_factor("OIII5007", EBV) / hb))
    assert np.isnan(row["log_err"])

    row = _get(out, "O3", "CGM")
    assert row["limit"] == "lower"
    o3, _ = _corr("OIII5007")
    assert row["log_value"] == pytest.approx(np.log10(o3 / (3 * OBS["HB"][1] * dust_factor("HB", EBV))))

    row = _get(out, "O3", "ISM", "g2_a")
    assert row["limit"] == "undefined" and np.isnan(row["log_value"])
    # ratios not involving the undetected lines are unaffected
    assert _get(out, "N2", "ISM", "g2_a")["limit"] == "none"


def test_tied_line_follows_its_reference():
    # [O III]4959 undetected but tied to a detected 5007: R23 stays a measurement
    out = compute_ratios(_table(_rows("g1", "g1", "ISM", undetected=("OIII4959",))), SAMPLES)
    o3, _ = _corr("OIII5007")
    o2, _ = _corr("OII3728")
    hb, _ = _corr("HB")
    row = _get(out, "R23")
    assert row["limit"] == "none"
    assert row["log_value"] == pytest.approx(np.log10((o3 * (1 + 1 / 3) + o2) / hb))

    # [O II] undetected makes the R23 numerator a limit (sum of fluxes and limit)
    out = compute_ratios(_table(_rows("g1", "g1", "ISM", undetected=("OII3728",))), SAMPLES)
    o4, _ = _corr("OIII4959")
    lim = 3 * OBS["OII3728"][1] * dust_factor("OII3728", EBV)
    row = _get(out, "R23")
    assert row["limit"] == "upper"
    assert row["log_value"] == pytest.approx(np.log10((o4 + o3 + lim) / hb))


def test_limit_dust_factor_fallback_for_nonpositive_flux():
    rows = _rows("g1", "g1", "ISM", undetected=("NII6583",))
    for r in rows:
        if r["line"] == "NII6583":
            r["flux"], r["flux_dustcorr"] = -0.1, -0.1
    out = compute_ratios(_table(rows), SAMPLES)
    ha, _ = _corr("HA")
    k = calzetti_k(6585.27 / 1e4)
    expected = np.log10(3 * OBS["NII6583"][1] * 10 ** (0.4 * k * EBV) / ha)
    row = _get(out, "N2")
    assert row["limit"] == "upper"
    assert row["log_value"] == pytest.approx(expected)
    assert row["nii_lowsn"]


def test_nii_lowsn_flag_only_on_nii_ratios():
    low = _rows("g1", "g1", "ISM", snr={"NII6583": 4.0})
    high = _rows("g1", "g1", "CGM", snr={"NII6583": 8.0})
    out = compute_ratios(_table(low, high), SAMPLES)
    ism = out[out["region"] == "ISM"].set_index("ratio")["nii_lowsn"]
    cgm = out[out["region"] == "CGM"].set_index("ratio")["nii_lowsn"]
    assert ism["N2"] and ism["N2O2"] and not ism["O3"]
    assert not cgm["N2"] and not cgm["N2O2"]


def test_cii_ratio_present_only_with_cii():
    rows = _rows("g1", "g1", "ISM")
    out = compute_ratios(_table(rows), SAMPLES)
    row = _get(out, "CII_HA")
    assert row["limit"] == "undefined" and np.isnan(row["log_value"])

    cii = dict(rows[0], line="CII", grating="alma", flux=30.0, flux_err=3.0, snr=10.0,
               flux_dustcorr=30.0, flux_dustcorr_err=3.0)
    out = compute_ratios(_table(rows, [cii]), SAMPLES)
    ha, dha = _corr("HA")
    row = _get(out, "CII_HA")
    assert row["limit"] == "none"
    assert row["log_value"] == pytest.approx(np.log10(30.0 / ha))
    assert row["log_err"] == pytest.approx(np.hypot(0.1, dha / ha) / LN10)


def test_log_ratio_vectorised_logic():
    states = ["detected", "limit", "detected", "limit", "missing"]
    den_states = ["detected", "detected", "limit", "limit", "detected"]
    val, err, lim = log_ratio([10, 10, 10, 10, 10], [1] * 5, states, [1, 1, 1, 1, 1], [0.1] * 5, den_states)
    assert list(lim) == ["none", "upper", "lower", "undefined", "undefined"]
    assert np.allclose(val[:3], 1.0)
    assert np.isnan(val[3:]).all()
    assert err[0] == pytest.approx(np.hypot(0.1, 0.1) / LN10)
    assert np.isnan(err[1:]).all()


def test_duplicate_lines_rejected():
    rows = _rows("g1", "g1", "ISM")
    with pytest.raises(ValueError, match="more than one row"):
        compute_ratios(_table(rows, rows[:1]), SAMPLES)


def test_calzetti_reference_values():
    # Calzetti et al. (2000), R_V = 4.05: k(Hb) = 4.60, k(Ha) = 3.33
    assert calzetti_k(0.4861) == pytest.approx(4.60, abs=0.01)
    assert calzetti_k(0.6563) == pytest.approx(3.33, abs=0.01)


def test_unknown_dust_bounds_the_dust_sensitive_ratios():
    """Hβ not detected (ebv_method 'none', no correction): O32, N2O2 are upper limits at their uncorrected
    values (a real correction lowers them), O2 a lower limit (its Hβ limit and the dust agree), R23 undefined
    (a mixed numerator, and an Hβ limit); the reddening-insensitive N2 keeps its value."""
    rows = _rows("g1", "g1", "CGM", ebv=0.0, undetected=("HB",))
    for r in rows:
        r["ebv_method"] = "none"
    known = _rows("g1", "g1", "ISM", ebv=0.0)
    for r in known:
        r["ebv_method"] = "balmer"
    out = compute_ratios(_table(rows, known), pd.DataFrame({"id": ["g1"], "logmstar": [10.0], "merger": [False]}))
    lim = out.set_index(["region", "ratio"])["limit"]
    assert (lim["CGM", "O32"], lim["CGM", "N2O2"], lim["CGM", "O2"], lim["CGM", "R23"], lim["CGM", "N2"]) == (
        "upper", "upper", "lower", "undefined", "none")
    assert (lim["ISM"].drop("CII_HA") == "none").all()  # the same fluxes with a measured E(B-V): values (no [C II])
    v = out.set_index(["region", "ratio"])
    assert v.loc[("CGM", "O32"), "log_value"] == pytest.approx(np.log10(24.0 / 6.0))  # the uncorrected bound
    assert np.isnan(v.loc[("CGM", "O32"), "log_err"])
