"""Monte Carlo chunks of line fits: chunk bookkeeping and one-line errors (issue 5)."""

from __future__ import annotations

import numpy as np
import pytest

from ismcgm import fit, linefluxes
from ismcgm import instrument as ins
from ismcgm.errors import InputError

FIT = {"method": "fast", "continuum_order": 1, "n_components": 1}


def _spectrum(z=5.0, grating="g395m"):
    wave = ins.get_grating(grating).wavelength_grid()
    flux = fit.line_model(wave, z, grating, {"HA": 2e-18, "NII6583": 3e-19, "HB": 7e-19}, sigma_kms=80.0) + 1e-21
    return wave, flux, np.full(wave.size, 2e-21)


def test_chunks_cover_every_realisation_once():
    for n, size in [(100, 50), (12, 5), (7, 1), (3, 10)]:
        reals = [r for c in range(linefluxes.n_chunks(n, size)) for r in linefluxes.chunk_realisations(c, n, size)]
        assert reals == list(range(n))


def test_fit_chunk_rows():
    wave, flux, err = _spectrum()
    df = linefluxes.fit_chunk("g1", [("g1", "ISM", wave, flux, err)], 5.0, "g395m", [3, 4], 1, FIT)
    assert set(df["realisation"]) == {3, 4}
    assert {"id", "component", "region", "grating", "line", "flux", "flux3", "velocity_kms", "sigma_kms"} <= set(df)
    ha = df[df["line"] == "HA"]["flux"].to_numpy()
    assert np.allclose(ha, 2e-18, rtol=0.05)


def test_every_line_outside_coverage_is_a_one_line_error():
    wave, flux, err = _spectrum()
    with pytest.raises(InputError) as exc:
        linefluxes.fit_chunk("g1", [("g1", "ISM", wave, flux, err)], 15.0, "g395m", [0], 1, FIT)
    msg = str(exc.value)
    assert "\n" not in msg and "g1" in msg and "g395m" in msg and "redshift" in msg


@pytest.mark.parametrize("bad", ["nan", "zero_err", "negative_err"])
def test_bad_spectrum_is_a_one_line_error(bad):
    wave, flux, err = _spectrum()
    if bad == "nan":
        flux = flux * np.nan
    else:
        err = err * (0 if bad == "zero_err" else -1)
    with pytest.raises(InputError) as exc:
        linefluxes.fit_chunk("g1", [("g1_a", "CGM", wave, flux, err)], 5.0, "g395m", [0], 1, FIT)
    msg = str(exc.value)
    assert "\n" not in msg and "g1" in msg and "CGM" in msg and "fix:" in msg
