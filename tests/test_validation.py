"""Unit tests of :mod:`ismcgm.validation` on hand-made tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ismcgm import validation


def _tables():
    keys = dict(component="g", grating="g395m")
    # true S/N 10, 10, 2 (the last only 'detected' because noise pushed it up), 1 (not detected)
    lf = pd.DataFrame([
        dict(region="ISM", line="HA", flux=11.0, flux_err=1.0, detected=True, **keys),
        dict(region="CGM", line="HA", flux=9.0, flux_err=1.0, detected=True, **keys),
        dict(region="ISM", line="NII6583", flux=4.0, flux_err=1.0, detected=True, **keys),
        dict(region="CGM", line="NII6583", flux=1.5, flux_err=1.0, detected=False, **keys),
    ])
    true = pd.DataFrame([
        dict(region="ISM", line="HA", true_flux=10.0, **keys),
        dict(region="CGM", line="HA", true_flux=10.0, **keys),
        dict(region="ISM", line="NII6583", true_flux=2.0, **keys),
        dict(region="CGM", line="NII6583", true_flux=1.0, **keys),
    ])
    return lf, true


def test_flux_pulls_select_on_the_true_snr():
    lf, true = _tables()
    rows, summary = validation.flux_pulls(lf, true, detect_snr=3.0)
    assert sorted(rows["line"]) == ["HA", "HA"]  # [N II] is below 3 sigma at the truth
    s = summary.set_index("line")
    assert s.loc["HA", "n"] == 2 and s.loc["HA", "median_pull"] == 0.0
    assert s.loc["HA", "std_pull"] == np.std([1.0, -1.0], ddof=1)
    # the detected-line statistics keep the (biased) near-threshold detection
    assert s.loc["NII6583", "n"] == 0 and s.loc["NII6583", "n_detected"] == 1
    assert s.loc["NII6583", "median_pull_detected"] == 2.0
    fam = validation.family_pulls(rows).set_index("family")
    assert list(fam.index) == ["balmer"] and fam.loc["balmer", "n"] == 2


def test_summary_checks_flags_a_biased_family():
    rec = pd.DataFrame([dict(ratio="O3", injected_shift=0.0, true_shift=0.01, measured_shift=0.05, sigma_med=0.01,
                             pull=0.5, within_2sigma=True)])
    fams = pd.DataFrame([dict(family="NII", n=30, median_pull=0.9, std_pull=1.0),
                         dict(family="OIII", n=30, median_pull=0.0, std_pull=1.0),
                         dict(family="OII", n=100, median_pull=0.0, std_pull=1.3),
                         dict(family="SII", n=30, median_pull=0.5, std_pull=1.3)])
    out = validation.summary_checks(rec, fams)
    checks = out["checks"]
    assert checks["pulls_NII_median_near_0"] is False and checks["pulls_OIII_median_near_0"] is True
    assert checks["pulls_OII_std_near_1"] is False  # 100 lines resolve a 30 % error misestimate
    # 30 lines do not resolve a median of 0.5 or a std of 1.3 (standard errors 0.23 and 0.13)
    assert checks["pulls_SII_median_near_0"] is True and checks["pulls_SII_std_near_1"] is True
    assert out["all_passed"] is False
    # the aperture shift against the injected one is a diagnostic (diluted by the masks), not a check
    assert "shift_O3_within_2sigma+0.02_of_injected" not in checks and checks["shift_O3_within_2sigma_of_true"]
    assert out["diagnostics"] == {"aperture_O3_within_2sigma+0.02_of_injected": False}
    tols = {f["family"]: (f["median_tol"], f["std_tol"]) for f in out["pulls_by_family"]}
    assert tols["OII"] == validation.pull_tolerances(100)
    json.dumps(out)  # written as summary.json


def test_pull_tolerances_keep_a_perfect_pipeline_passing():
    """Unit-normal pulls pass both family checks in >= 99 % of samples of 8-200 lines (3 standard errors);
    the fixed bands of the pooled test apply once the sample resolves them."""
    rng = np.random.default_rng(5)
    for n in (8, 28, 45, 200):
        med_tol, std_tol = validation.pull_tolerances(n)
        x = rng.standard_normal((4000, n))
        ok = (np.abs(np.median(x, axis=1)) <= med_tol) & (np.abs(x.std(axis=1, ddof=1) - 1.0) <= std_tol)
        assert ok.mean() >= 0.99, (n, ok.mean())
    assert validation.pull_tolerances(10_000) == (validation.PULL_MEDIAN_TOL, validation.PULL_STD_TOL)
    assert validation.pull_tolerances(28)[0] > 0.7


def _recovery_row(**kw):
    row = dict(ratio="N2", injected_shift=-0.2, true_shift=-0.05, measured_shift=-0.04, sigma_med=0.05, pull=0.2,
               within_2sigma=True, intrinsic_shift=np.nan, intrinsic_sigma_med=np.nan, intrinsic_p16=np.nan,
               intrinsic_p84=np.nan, intrinsic_stack_shift=np.nan,
               intrinsic_stack_p16=np.nan, intrinsic_stack_p84=np.nan, intrinsic_stack_limit="undefined")
    return pd.Series(row | kw)


def test_intrinsic_check_prefers_the_components_then_the_stack():
    """The decomposition's check: the per-component shift where it has a sigma_med, else the stacked value
    (sigma = half its 16-84 % width) or bound; nothing without either."""
    check = validation.intrinsic_check
    assert check(_recovery_row(intrinsic_shift=-0.25, intrinsic_sigma_med=0.02)) == (
        "intrinsic_N2_within_2sigma+0.02_of_injected", True)
    assert check(_recovery_row(intrinsic_shift=-0.30, intrinsic_sigma_med=0.02))[1] is False
    # two components whose values agree by chance: sigma_med (their scatter) is tiny, the Monte Carlo range
    # of the median (their errors) is not, and sets sigma
    two = dict(intrinsic_shift=-0.085, intrinsic_sigma_med=0.005, intrinsic_p16=-0.138, intrinsic_p84=-0.011)
    assert check(_recovery_row(**two))[1] is True
    assert check(_recovery_row(**two | {"intrinsic_p16": -0.09, "intrinsic_p84": -0.08}))[1] is False
    # one component (no sigma_med): the stack decides
    stacked = dict(intrinsic_shift=0.4, intrinsic_stack_shift=-0.18, intrinsic_stack_p16=-0.21,
                   intrinsic_stack_p84=-0.15, intrinsic_stack_limit="none")
    assert check(_recovery_row(**stacked)) == ("intrinsic_stack_N2_within_2sigma+0.02_of_injected", True)
    assert check(_recovery_row(**stacked | {"intrinsic_stack_shift": -0.05}))[1] is False
    assert check(_recovery_row(intrinsic_stack_shift=-0.29, intrinsic_stack_limit="upper")) == (
        "intrinsic_stack_N2_upper_limit_consistent", False)  # < -0.29 excludes the injected -0.20
    assert check(_recovery_row(intrinsic_stack_shift=-0.19, intrinsic_stack_limit="upper"))[1] is True
    # a bound below the truth with the measurement behind it 1.7 sigma away (side facing it) is consistent;
    # 4 sigma away it is not
    behind = dict(intrinsic_stack_shift=-0.29, intrinsic_stack_limit="upper", intrinsic_stack_mc_p16=-0.42,
                  intrinsic_stack_mc_p50=-0.36, intrinsic_stack_mc_p84=-0.26)
    assert check(_recovery_row(**behind)) == ("intrinsic_stack_N2_upper_limit_consistent", True)
    assert check(_recovery_row(**behind | {"intrinsic_stack_mc_p84": -0.32}))[1] is False
    above = dict(intrinsic_stack_shift=-0.1, intrinsic_stack_limit="lower", intrinsic_stack_mc_p16=-0.05,
                 intrinsic_stack_mc_p50=0.0, intrinsic_stack_mc_p84=0.06)  # > -0.1, 3.6 sigma above -0.2
    assert check(_recovery_row(**above)) == ("intrinsic_stack_N2_lower_limit_consistent", False)
    assert check(_recovery_row(intrinsic_stack_shift=-0.25, intrinsic_stack_limit="lower"))[1] is True
    assert check(_recovery_row()) is None
    # a per-component statistic of 2 of the stack's 22 components (the rest limits) is a selected few: the
    # stack is judged; with 11 of 22 the components are
    few = stacked | {"intrinsic_sigma_med": 0.1, "intrinsic_n": 2.0, "intrinsic_stack_n": 22.0}
    assert check(_recovery_row(**few)) == ("intrinsic_stack_N2_within_2sigma+0.02_of_injected", True)
    assert check(_recovery_row(**few | {"intrinsic_n": 11.0})) == (
        "intrinsic_N2_within_2sigma+0.02_of_injected", False)  # +0.4 against -0.2
    assert check(_recovery_row(**few | {"intrinsic_stack_limit": "undefined"}))[0].startswith("intrinsic_N2")
    out = validation.summary_checks(pd.DataFrame([_recovery_row(intrinsic_shift=-0.3, intrinsic_sigma_med=0.02)]),
                                    pd.DataFrame(columns=["family", "n", "median_pull", "std_pull"]))
    assert out["checks"]["intrinsic_N2_within_2sigma+0.02_of_injected"] is False and out["all_passed"] is False
