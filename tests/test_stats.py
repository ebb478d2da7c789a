"""Tests of ismcgm.stats on hand-made cases, and of the statistics figures."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ismcgm import stats
from ismcgm.ratios import RATIO_COLUMNS
from ismcgm.stats import (
    MASS_TREND_COLUMNS,
    STATS_COLUMNS,
    d11,
    d11_draws_table,
    d11_test,
    kendall_test,
    make_rng,
    mass_trend_table,
    pair_regions,
    shift_stats,
    statistics_table,
)


def _ratios_df(log_ism, err_ism, log_cgm, err_cgm, ratio="O32", logmstar=None, limits=None, lowsn=None):
    """A ratio table with one single-galaxy component per point."""
    n = len(log_ism)
    logmstar = np.linspace(9.6, 10.9, n) if logmstar is None else logmstar
    rows = []
    for i in range(n):
        for region, val, err in (("ISM", log_ism[i], err_ism[i]), ("CGM", log_cgm[i], err_cgm[i])):
            limit = (limits or {}).get((i, region), "none")
            rows.append(
                {
                    "id": f"m{i:02d}",
                    "component": f"m{i:02d}",
                    "region": region,
                    "ratio": ratio,
                    "log_value": val,
                    "log_err": np.nan if limit != "none" else err,
                    "limit": limit,
                    "nii_lowsn": bool((lowsn or {}).get(i, False)),
                    "logmstar": logmstar[i],
                    "merger": False,
                }
            )
    return pd.DataFrame(rows, columns=list(RATIO_COLUMNS))


@pytest.fixture(scope="module")
def rng_data():
    rng = np.random.default_rng(12345)
    x = rng.uniform(-0.5, 0.8, 20)
    return x, np.full(20, 0.02)


def test_identical_regions_give_zero_d11_and_ks_p_one(rng_data):
    x, _ = rng_data
    zero = np.zeros_like(x)
    res = d11_test(x, zero, x, zero, np.random.default_rng(1), n_mc=20)
    assert np.allclose(res.data, 0.0)
    assert res.ks_p == pytest.approx(1.0)
    assert res.f_rej_mc == 0.0
    shift = shift_stats(x, zero, x, zero, np.random.default_rng(1), n_mc=20)
    assert shift.shift_median == 0.0 and shift.sigma_med == 0.0


def test_constant_shift_is_recovered_and_rejected(rng_data):
    x, err = rng_data
    table = statistics_table(_ratios_df(x, err, x + 0.3, err), seed=7, n_mc=50)
    row = table.iloc[0]
    assert row["n"] == 20
    assert row["shift_median"] == pytest.approx(0.3, abs=0.01)
    assert row["shift_p16"] <= row["shift_p84"]
    assert abs(row["shift_p16"] - 0.3) < 0.03 and abs(row["shift_p84"] - 0.3) < 0.03
    assert row["f_rej_mc"] > 0.5
    assert row["ks_p"] < 0.05
    # ISM and CGM perfectly correlated
    assert row["tau_b"] == pytest.approx(1.0)
    assert row["f_dep_mc"] > 0.5


def test_tau_b_equals_scipy(rng_data):
    x, err = rng_data
    y = x[::-1] + np.random.default_rng(3).normal(0, 0.3, x.size)
    res = kendall_test(x, err, y, err, np.random.default_rng(0), n_mc=10)
    ref = sps.kendalltau(x, y, variant="b")
    assert res.tau_b == pytest.approx(ref.statistic)
    assert res.p_tau == pytest.approx(ref.pvalue)
    assert 0.0 <= res.f_dep_mc <= 1.0


def test_d11_definition_and_sigma_med():
    assert d11([0.0, 1.0], [1.0, 0.0]) == pytest.approx([1 / np.sqrt(2), -1 / np.sqrt(2)])
    delta = np.array([0.1, 0.2, 0.4, 0.5])
    assert stats.sigma_median(delta) == pytest.approx(1.235 * np.std(delta, ddof=1) / 2.0)
    assert np.isnan(stats.sigma_median([0.1]))


def test_same_seed_same_table_and_rng_streams(rng_data):
    x, err = rng_data
    df = _ratios_df(x, err + 0.1, x + 0.05, err + 0.1)
    a = statistics_table(df, seed=3, n_mc=30)
    b = statistics_table(df, seed=3, n_mc=30)
    pd.testing.assert_frame_equal(a, b)
    assert make_rng(3, "O3").random() == make_rng(3, "O3").random()
    assert make_rng(3, "O3").random() != make_rng(3, "O2").random()
    assert make_rng(3, "O3").random() != make_rng(4, "O3").random()


def test_d11_draws_match_statistics(rng_data):
    x, err = rng_data
    df = _ratios_df(x, err + 0.05, x + 0.1, err + 0.05)
    table = statistics_table(df, seed=11, n_mc=20)
    draws = d11_draws_table(df, seed=11, n_mc=20)
    assert tuple(draws.columns) == stats.D11_DRAW_COLUMNS
    data = draws.loc[draws["kind"] == "data", "d11"]
    null = draws.loc[draws["kind"] == "null", "d11"]
    assert len(data) == 20 and len(null) == 20 * 20
    assert (draws["kind"] == "mc").sum() == 20 * 20
    assert sps.ks_2samp(data, null).pvalue == pytest.approx(table["ks_p"].iloc[0])


def test_limits_excluded_lowsn_kept(rng_data):
    x, err = rng_data
    limits = {(0, "ISM"): "upper", (1, "CGM"): "lower", (2, "CGM"): "undefined"}
    df = _ratios_df(x, err, x, err, ratio="N2", limits=limits, lowsn={3: True, 4: True})
    pairs = pair_regions(df)
    assert pairs["usable"].sum() == 17
    assert pairs.loc[pairs["usable"], "nii_lowsn"].sum() == 2
    assert statistics_table(df, seed=0, n_mc=5)["n"].iloc[0] == 17


def test_small_samples_give_nan_not_errors():
    df = _ratios_df([0.1, 0.2], [0.05, 0.05], [0.2, 0.1], [0.05, 0.05])
    row = statistics_table(df, seed=0, n_mc=5).iloc[0]
    assert row["n"] == 2
    for col in ("tau_b", "p_tau", "f_dep_mc", "ks_p", "f_rej_mc"):
        assert np.isnan(row[col])
    assert np.isfinite(row["shift_median"]) and np.isfinite(row["sigma_med"])

    empty = _ratios_df([0.1], [0.05], [0.2], [0.05], limits={(0, "ISM"): "upper"})
    row = statistics_table(empty, seed=0, n_mc=5).iloc[0]
    assert row["n"] == 0 and np.isnan(row["shift_median"])
    assert tuple(statistics_table(empty, seed=0, n_mc=5).columns) == STATS_COLUMNS


def test_mass_trend_bins():
    logm = np.array([9.3, 9.7, 9.9, 10.1, 10.4, 10.6, 11.2])
    shift = np.array([0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3])
    x = np.zeros(logm.size)
    err = np.full(logm.size, 0.05)
    df = _ratios_df(x, err, x + shift, err, logmstar=logm)
    trend = mass_trend_table(df)
    assert tuple(trend.columns) == MASS_TREND_COLUMNS
    assert list(trend["mass_bin"]) == ["9.5-10.0", "10.0-10.5", "10.5-11.0"]
    # outer bins are open: 9.3 joins the first bin, 11.2 the last
    assert list(trend["n"]) == [3, 2, 2]
    assert np.allclose(trend["shift_median"], [0.1, 0.2, 0.3])
    assert np.allclose(trend["sigma_med"], 0.0)


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def figure_inputs():
    rng = np.random.default_rng(5)
    parts = []
    for k, ratio in enumerate(("O3", "O2", "N2")):
        x = rng.uniform(-0.6, 0.6, 8)
        err = np.full(8, 0.05)
        part = _ratios_df(
            x, err, x + 0.1 * k + rng.normal(0, 0.05, 8), err, ratio=ratio,
            limits={(0, "ISM"): "upper", (1, "CGM"): "lower"}, lowsn={2: ratio == "N2"},
        )
        # make the last two points the components of one merger
        part.loc[part["id"].isin(["m06", "m07"]), ["id", "merger"]] = ["mrg", True]
        part.loc[part["component"] == "m06", "component"] = "mrg_a"
        part.loc[part["component"] == "m07", "component"] = "mrg_b"
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    return df, statistics_table(df, seed=1, n_mc=10), d11_draws_table(df, seed=1, n_mc=10)


def _check_outputs(*paths):
    for p in paths:
        assert p.exists() and p.stat().st_size > 0


def test_fig3_writes_files(tmp_path, figure_inputs):
    from ismcgm.plots.fig3_ratios import plot_fig3

    df, table, _ = figure_inputs
    pdf, png = tmp_path / "fig3.pdf", tmp_path / "fig3.png"
    plot_fig3(df, table, pdf, png, synthetic=True)
    _check_outputs(pdf, png)


def test_fig4_writes_files(tmp_path, figure_inputs):
    from ismcgm.plots.fig4_d11 import plot_fig4

    df, table, draws = figure_inputs
    pdf, png = tmp_path / "out" / "fig4.pdf", tmp_path / "out" / "fig4.png"
    plot_fig4(df, table, draws, pdf, png, synthetic=True)
    _check_outputs(pdf, png)


def test_recovery_figure_writes_files(tmp_path):
    from ismcgm.plots.validation import plot_recovery

    rec = pd.DataFrame(
        {
            "ratio": ["O3", "O2", "O32", "N2O2"],
            "injected_shift": [0.0, 0.14, -0.15, -0.10],
            "true_shift": [0.01, 0.13, -0.14, -0.09],
            "measured_shift": [0.02, 0.10, -0.16, -0.30],
            "sigma_med": [0.05, 0.04, 0.05, 0.06],
        }
    )
    rec["pull"] = (rec["measured_shift"] - rec["true_shift"]) / rec["sigma_med"]
    rec["within_2sigma"] = rec["pull"].abs() <= 2
    pdf, png = tmp_path / "rec.pdf", tmp_path / "rec.png"
    plot_recovery(rec, pdf, png)
    _check_outputs(pdf, png)
    # with the decomposition's intrinsic shifts (issue 19), one of them undefined
    rec["intrinsic_shift"] = [0.0, 0.15, float("nan"), -0.12]
    rec["intrinsic_sigma_med"] = [0.04, 0.06, float("nan"), 0.2]
    pdf, png = tmp_path / "rec_intrinsic.pdf", tmp_path / "rec_intrinsic.png"
    plot_recovery(rec, pdf, png)
    _check_outputs(pdf, png)


def test_recovery_figure_rings_the_estimator_summary_json_judges():
    """The ring sits on the per-component value where it holds half the stack's components, on the stack
    otherwise, black where the check passes and red where it fails (validation.intrinsic_check)."""
    import matplotlib.pyplot as plt

    from ismcgm.plots.validation import _mark_judged

    rec = pd.DataFrame({"ratio": ["O2", "O32"], "injected_shift": [0.25, -0.50],
                        "intrinsic_shift": [0.27, -0.51], "intrinsic_sigma_med": [0.1, 0.08],
                        "intrinsic_p16": [0.2, -0.55], "intrinsic_p84": [0.35, -0.45],
                        "intrinsic_n": [20, 8], "intrinsic_stack_n": [30, 30],
                        "intrinsic_stack_shift": [0.30, -0.61], "intrinsic_stack_p16": [0.25, -0.64],
                        "intrinsic_stack_p84": [0.35, -0.58], "intrinsic_stack_limit": ["none", "none"]})
    fig, ax = plt.subplots()
    assert _mark_judged(ax, rec, np.array([0.0, 1.0]))
    rings = [ln for ln in ax.lines if ln.get_marker() == "o"]
    got = [(float(ln.get_xdata()[0]), float(ln.get_ydata()[0]), ln.get_markeredgecolor()) for ln in rings]
    plt.close(fig)
    # O2: 20 of 30 components -> the per-component value, within 2 sigma + 0.02 of +0.25; O32: 8 of 30 -> the
    # stack, 0.11 from -0.50 with a 0.03 half-width -> fails
    assert [(pytest.approx(x), y, c) for x, y, c in got] == [(0.22, 0.27, "k"), (1.36, -0.61, "tab:red")]


def test_recovery_figure_draws_the_measurement_behind_a_bound(tmp_path, monkeypatch):
    """A stacked upper limit gets its realisations' median and 16-84 % range beside the triangle."""
    import matplotlib.axes

    from ismcgm.plots.validation import plot_recovery

    rec = pd.DataFrame({"ratio": ["O3", "N2"], "injected_shift": [-0.25, -0.20], "true_shift": [-0.07, -0.05],
                        "measured_shift": [-0.08, 0.04], "sigma_med": [0.01, 0.07], "pull": [-0.4, 1.3],
                        "within_2sigma": [True, True], "intrinsic_shift": [-0.26, np.nan],
                        "intrinsic_sigma_med": [0.08, np.nan], "intrinsic_stack_shift": [-0.23, -0.28],
                        "intrinsic_stack_p16": [-0.26, np.nan], "intrinsic_stack_p84": [-0.20, np.nan],
                        "intrinsic_stack_limit": ["none", "upper"], "intrinsic_stack_mc_p16": [-0.26, -1.13],
                        "intrinsic_stack_mc_p50": [-0.23, -0.64], "intrinsic_stack_mc_p84": [-0.20, -0.40]})
    drawn = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, x, y, *a, **k: drawn.append((k.get("fmt"), list(np.atleast_1d(y))))
                        or real(self, x, y, *a, **k))
    pdf, png = tmp_path / "rec.pdf", tmp_path / "rec.png"
    plot_recovery(rec, pdf, png)
    _check_outputs(pdf, png)
    assert ("x", [-0.64]) in drawn  # only the bound's row, at its realisations' median
