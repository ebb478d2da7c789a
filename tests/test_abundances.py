"""Tests of ismcgm.abundances with hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from ismcgm.abundances import (
    ABUNDANCE_COLUMNS,
    DELTA_COLUMNS,
    SAMPLE_ID,
    abundance_input_from_ratios,
    abundance_table,
    delta_table,
    log_no_pagel,
    log_no_strom,
    t_n_plus,
)


def test_t_from_r23():
    # x = log R23 = 1: (6065 + 1600 + 1878 + 1803) / 1e4
    assert t_n_plus(10.0) == pytest.approx(1.1346)
    # x = 0
    assert t_n_plus(1.0) == pytest.approx(0.6065)


def test_pagel_hand_computed():
    # N2O2 = 0.15, R23 = 10: log(4/3 0.15) + 0.307 - 0.02 log(1.1346) - 0.726/1.1346 + 0.1
    assert log_no_pagel(0.15, 10.0) == pytest.approx(-0.9329399429, abs=1e-9)
    # N2O2 = 0.3, R23 = 1: t = 0.6065
    assert log_no_pagel(0.3, 1.0) == pytest.approx(-1.1836287765, abs=1e-9)
    # without the ICF: N+/O+
    assert log_no_pagel(0.15, 10.0, log_icf=0.0) == pytest.approx(-1.0329399429, abs=1e-9)


def test_strom_hand_computed():
    assert log_no_strom(0.1) == pytest.approx(-1.22)
    assert log_no_strom(1.0) == pytest.approx(-0.57)


def test_vectorised_and_invalid():
    out = log_no_pagel(np.array([0.15, 0.0, -1.0, 0.15]), np.array([10.0, 10.0, 10.0, np.nan]))
    assert out[0] == pytest.approx(-0.9329399429)
    assert np.isnan(out[1:]).all()
    assert np.isnan(log_no_strom(np.array([0.0, -0.1]))).all()


def _realisations():
    rows = []
    # galaxy A: N2O2 ISM 0.2 / CGM 0.1 in every realisation; galaxy B: equal
    for gid, ism, cgm in (("A", 0.2, 0.1), ("B", 0.2, 0.2)):
        for mc in range(5):
            rows.append(dict(id=gid, component="a", region="ISM", N2O2=ism, R23=10.0, mc=mc))
            rows.append(dict(id=gid, component="a", region="CGM", N2O2=cgm, R23=10.0, mc=mc))
    return pd.DataFrame(rows)


def test_abundance_table_mc():
    tab = abundance_table(_realisations())
    assert list(tab.columns) == list(ABUNDANCE_COLUMNS)
    assert len(tab) == 2 * 2 * 2
    row = tab[(tab["id"] == "A") & (tab["region"] == "CGM") & (tab["method"] == "strom17")].iloc[0]
    assert row["log_no"] == pytest.approx(0.65 * np.log10(0.1) - 0.57)
    assert row["log_no_err"] == pytest.approx(0.0)
    assert row["n_mc"] == 5


def test_abundance_table_spread():
    vals = [0.05, 0.1, 0.2, 0.3, 0.4]
    df = pd.DataFrame(dict(id="A", component="a", region="ISM", N2O2=vals, R23=10.0, mc=range(5)))
    row = abundance_table(df, methods=["strom17"]).iloc[0]
    # monotonic in N2O2: the median realisation gives the median
    assert row["log_no"] == pytest.approx(0.65 * np.log10(0.2) - 0.57)
    logs = 0.65 * np.log10(vals) - 0.57
    p16, p84 = np.percentile(logs, [16, 84])
    assert row["log_no_err"] == pytest.approx((p84 - p16) / 2)


def test_abundance_table_single_values():
    df = pd.DataFrame(dict(id=["A", "A"], component="a", region=["ISM", "CGM"], N2O2=[0.15, 0.1], R23=10.0))
    tab = abundance_table(df, methods=["pagel92"])
    assert tab.set_index("region").loc["ISM", "log_no"] == pytest.approx(-0.9329399429)
    assert tab["log_no_err"].isna().all()


def test_delta_table():
    d = delta_table(_realisations())
    assert list(d.columns) == list(DELTA_COLUMNS)
    a = d[(d["id"] == "A")].set_index("method")
    # same t in ISM and CGM: Delta = log(0.1/0.2) for Pagel, 0.65 x that for Strom
    assert a.loc["pagel92", "delta_log_no"] == pytest.approx(-0.30103, abs=1e-5)
    assert a.loc["strom17", "delta_log_no"] == pytest.approx(0.65 * -0.30103, abs=1e-5)
    sample = d[d["id"] == SAMPLE_ID].set_index("method")
    # median of (-0.30103, 0) and 1.235 std / sqrt(2)
    assert sample.loc["pagel92", "delta_log_no"] == pytest.approx(-0.150515, abs=1e-5)
    assert sample.loc["pagel92", "delta_err"] == pytest.approx(0.185886, abs=1e-5)
    assert sample.loc["pagel92", "n"] == 2
    assert sample.loc["pagel92", "component"] == "all"


def test_input_from_ratio_table():
    ratios = pd.DataFrame(
        dict(
            id="A",
            component="a",
            region=["ISM", "ISM", "CGM", "CGM"],
            ratio=["N2O2", "R23", "N2O2", "R23"],
            log_value=[-1.0, 1.0, -1.2, 1.0],
            limit=["none", "none", "upper", "none"],
        )
    )
    inp = abundance_input_from_ratios(ratios).set_index("region")
    assert inp.loc["ISM", "N2O2"] == pytest.approx(0.1)
    assert inp.loc["ISM", "R23"] == pytest.approx(10.0)
    assert np.isnan(inp.loc["CGM", "N2O2"])  # no N/O from a limit


def test_missing_columns():
    with pytest.raises(ValueError, match="lacks columns"):
        abundance_table(pd.DataFrame(dict(id=["A"], N2O2=[0.1])))
