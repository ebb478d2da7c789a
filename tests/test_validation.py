"""Unit tests of :mod:`ismcgm.validation` on hand-made tables."""

from __future__ import annotations

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
    rec = pd.DataFrame([dict(ratio="O3", injected_shift=0.0, true_shift=0.01, measured_shift=0.02, sigma_med=0.02,
                             pull=0.5, within_2sigma=True)])
    fams = pd.DataFrame([dict(family="NII", n=30, median_pull=0.5, std_pull=1.0),
                         dict(family="OIII", n=30, median_pull=0.0, std_pull=1.0)])
    out = validation.summary_checks(rec, fams)
    assert out["checks"]["pulls_NII_abs_median_below_0.2"] is False
    assert out["checks"]["pulls_OIII_abs_median_below_0.2"] is True
    assert out["checks"]["shift_O3_within_2sigma+0.02_of_injected"] is True
    assert out["all_passed"] is False


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
    assert check(_recovery_row(intrinsic_stack_shift=-0.25, intrinsic_stack_limit="lower"))[1] is True
    assert check(_recovery_row()) is None
    out = validation.summary_checks(pd.DataFrame([_recovery_row(intrinsic_shift=-0.3, intrinsic_sigma_med=0.02)]),
                                    pd.DataFrame(columns=["family", "n", "median_pull", "std_pull"]))
    assert out["checks"]["intrinsic_N2_within_2sigma+0.02_of_injected"] is False and out["all_passed"] is False
