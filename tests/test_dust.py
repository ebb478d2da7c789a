"""Tests of the Calzetti curve and the Balmer-decrement correction of :mod:`ismcgm.dust`."""

import numpy as np
import pytest
from astropy import units as u

from ismcgm import dust, instrument

HA_UM = instrument.LINE_WAVELENGTHS["HA"] * 1e-4
HB_UM = instrument.LINE_WAVELENGTHS["HB"] * 1e-4


def calzetti_by_hand(x):
    """Calzetti et al. (2000) eq. 4 written out for one wavelength [micron]."""
    if x < 0.63:
        return 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + 4.05
    return 2.659 * (-1.857 + 1.040 / x) + 4.05


def test_calzetti_values_at_the_balmer_lines():
    # the values quoted for the Calzetti curve (e.g. Reddy et al. 2015)
    # (rounded to 0.01; the vacuum wavelengths give 4.598 and 3.325)
    assert dust.calzetti_k(HB_UM) == pytest.approx(4.60, abs=0.01)
    assert dust.calzetti_k(HA_UM) == pytest.approx(3.33, abs=0.01)
    # k(Hb) - k(Ha) sets the familiar 2.5 / 1.27 = 1.96 of the decrement formula
    assert dust.calzetti_k(HB_UM) - dust.calzetti_k(HA_UM) == pytest.approx(1.27, abs=0.01)


def test_calzetti_normalisation():
    # k(V) = R_V and k(B) - k(V) = 1 by the definition of E(B-V)
    assert dust.calzetti_k(0.55) == pytest.approx(4.05, abs=0.01)
    assert dust.calzetti_k(0.44) - dust.calzetti_k(0.55) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("x", [0.125, 0.3727, 0.5008, 0.62, 0.64, 0.6718, 1.5, 2.2])
def test_calzetti_both_branches_match_the_formula(x):
    assert dust.calzetti_k(x) == pytest.approx(calzetti_by_hand(x), rel=1e-12)


def test_calzetti_is_vectorised_and_accepts_quantities():
    x = np.array([0.3, 0.5, 0.7, np.nan])
    k = dust.calzetti_k(x)
    assert k.shape == (4,)
    np.testing.assert_allclose(k[:3], [calzetti_by_hand(v) for v in x[:3]])
    assert np.isnan(k[3])
    assert dust.calzetti_k(6564.61 * u.AA) == pytest.approx(dust.calzetti_k(0.656461))
    np.testing.assert_allclose(dust.calzetti_k([0.5, 0.7] * u.um), k[1:3])
    assert dust.calzetti_k(3.0, r_v=3.1, extrapolate=True) == pytest.approx(
        2.659 * (-1.857 + 1.040 / 3.0) + 3.1
    )


def test_calzetti_refuses_to_extrapolate():
    with pytest.raises(ValueError):
        dust.calzetti_k(0.1)
    with pytest.raises(ValueError):
        dust.calzetti_k([0.5, 3.0])


def test_k_line():
    assert dust.k_line("HA") == pytest.approx(dust.calzetti_k(HA_UM))
    with pytest.raises(ValueError):
        dust.k_line("LYA")


def test_ebv_from_balmer_round_trip():
    ebv_true = np.array([0.0, 0.1, 0.35, 0.8])
    ha0, hb0 = 2.86e-17, 1e-17
    ha = ha0 * 10 ** (-0.4 * dust.calzetti_k(HA_UM) * ebv_true)
    hb = hb0 * 10 ** (-0.4 * dust.calzetti_k(HB_UM) * ebv_true)
    ebv = dust.ebv_from_balmer(ha, hb)
    np.testing.assert_allclose(ebv, ebv_true, atol=1e-12)
    np.testing.assert_allclose(dust.correct(ha, instrument.LINE_WAVELENGTHS["HA"], ebv), ha0, rtol=1e-12)
    np.testing.assert_allclose(dust.correct(hb, instrument.LINE_WAVELENGTHS["HB"] * u.AA, ebv), hb0, rtol=1e-12)


def test_ebv_from_balmer_hand_value():
    # Ha/Hb = 4: E = 2.5 / (4.598 - 3.325) * log10(4 / 2.86) = 0.286
    expected = 2.5 / (calzetti_by_hand(HB_UM) - calzetti_by_hand(HA_UM)) * np.log10(4.0 / 2.86)
    assert dust.ebv_from_balmer(4.0, 1.0) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.286, abs=0.002)


def test_ebv_from_balmer_edge_cases():
    ha = np.array([2.0, -1.0, np.nan, 3.0, 3.0, 2.86])
    hb = np.array([1.0, 1.0, 1.0, 0.0, -1.0, 1.0])
    ebv = dust.ebv_from_balmer(ha, hb)
    assert ebv[0] == 0.0  # below the intrinsic ratio: no correction
    assert ebv[1] == 0.0  # negative Ha (noise realisation): ratio below intrinsic
    assert np.all(np.isnan(ebv[2:5]))  # no meaningful ratio
    assert ebv[5] == pytest.approx(0.0, abs=1e-15)
    assert isinstance(dust.ebv_from_balmer(5.0, 1.0), float)


def test_ebv_broadcasts_over_realisations():
    rng = np.random.default_rng(0)
    ha = rng.normal(4.0, 0.2, (100, 3))
    hb = rng.normal(1.0, 0.05, (100, 3))
    ebv = dust.ebv_from_balmer(ha, hb)
    assert ebv.shape == (100, 3)
    corrected = dust.correct(ha, instrument.LINE_WAVELENGTHS["HA"], ebv)
    assert np.all(corrected >= ha)


def test_stellar_fraction():
    assert dust.F_STELLAR_NEBULAR == 0.56
    np.testing.assert_allclose(dust.ebv_stellar([0.1, 0.5]), [0.056, 0.28])
    assert dust.ebv_stellar(0.5, f=0.44) == pytest.approx(0.22)
