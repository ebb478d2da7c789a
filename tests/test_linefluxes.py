"""Monte Carlo chunks of line fits: chunk bookkeeping and one-line errors (issue 5)."""

from __future__ import annotations

import numpy as np
import pytest

from ismcgm import fit, linefluxes, mcfit
from ismcgm import instrument as ins
from ismcgm.errors import InputError

FIT = {"method": "fast", "continuum_order": 1, "n_components": 1}


def _spectrum(z=5.0, grating="g395m"):
    wave = ins.get_grating(grating).wavelength_grid()
    flux = fit.line_model(wave, z, grating, {"HA": 2e-18, "NII6583": 3e-19, "HB": 7e-19}, sigma_kms=80.0) + 1e-21
    return wave, flux, np.full(wave.size, 2e-21)


def test_chunks_cover_every_realisation_once():
    for n, size in [(100, 50), (12, 5), (7, 1), (3, 10)]:
        reals = [r for c in range(mcfit.n_chunks(n, size)) for r in mcfit.chunk_realisations(c, n, size)]
        assert reals == list(range(n))


def test_fit_chunk_rows():
    wave, flux, err = _spectrum()
    df = linefluxes.fit_chunk("g1", [("g1", "ISM", wave, flux, err)], 5.0, "g395m", [3, 4], 1, FIT)
    assert set(df["realisation"]) == {3, 4}
    assert {"id", "component", "region", "grating", "line", "flux", "flux3", "velocity_kms", "sigma_kms"} <= set(df)
    ha = df[df["line"] == "HA"]["flux"].to_numpy()
    assert np.allclose(ha, 2e-18, rtol=0.05)


def test_a_written_chunk_reads_back_as_the_chunk_table(tmp_path):
    """The job writes numpy columns with pyarrow (no pandas); the gather reads the table fit_chunk gives."""
    import pandas as pd

    from ismcgm.io import read_chunks

    wave, flux, err = _spectrum()
    args = ("g1", [("g1", "ISM", wave, flux, err), ("g1", "CGM", wave, 0.5 * flux, err)], 5.0, "g395m", [3, 4], 1, FIT)
    cols = mcfit.chunk_columns(*args)
    assert tuple(cols) == mcfit.CHUNK_COLUMNS
    mcfit.write_chunk([cols, mcfit.chunk_columns(*args[:4], [5], *args[5:])], tmp_path / "c.parquet")
    expected = pd.concat([linefluxes.fit_chunk(*args), linefluxes.fit_chunk(*args[:4], [5], *args[5:])],
                         ignore_index=True)
    pd.testing.assert_frame_equal(read_chunks([tmp_path / "c.parquet"]), expected)


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


def _chunk_table(rng, n_real=40):
    """A realisation table as fit_chunk writes it: two galaxies, ISM/CGM, two gratings, heavy-tailed Hb."""
    import pandas as pd

    rows = []
    for gid in ("g1", "g2"):
        for region in ("ISM", "CGM"):
            for grating, lines in (("g235m", ("OII3728", "HB", "OIII5007")), ("g395m", ("OIII5007", "HA", "HB"))):
                for line in lines:
                    f = rng.standard_t(3, n_real) + (0.5 if line == "HB" else 3.0)
                    rows.append(pd.DataFrame({
                        "id": gid, "component": gid, "region": region, "grating": grating,
                        "realisation": np.arange(n_real), "line": line, "flux": f,
                        "flux3": f + rng.normal(0, 0.3, n_real), "velocity_kms": rng.normal(0, 20, n_real),
                        "sigma_kms": 80 + rng.normal(0, 5, n_real)}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("mode", ["red", "combine"])
def test_vectorised_summaries_equal_the_per_group_ones_bit_for_bit(mode):
    """The block (one group per row) summaries of gather are the per-group loop's numbers exactly."""
    from pandas.testing import assert_frame_equal

    real = _chunk_table(np.random.default_rng(5))
    real = real.sort_values(["id", "component", "region", "grating", "line", "realisation"], kind="stable")
    real = real.reset_index(drop=True)
    assert linefluxes._blocks(real, ["id", "component", "region", "grating", "line"]) is not None
    table = linefluxes._flux_summaries(real, 3.0)
    assert_frame_equal(table, linefluxes._flux_summaries_by_group(real, 3.0), check_exact=True)
    if mode == "combine":
        real = linefluxes.combine_overlap(real, table, 1.02)
        table = linefluxes._flux_summaries(real, 3.0)
        assert_frame_equal(table, linefluxes._flux_summaries_by_group(real, 3.0), check_exact=True)
    real, methods = linefluxes._dust(real, table, 2.86)
    assert np.isfinite(real["ebv"]).any()
    assert_frame_equal(linefluxes._dust_summaries(real, methods), linefluxes._dust_summaries_by_group(real, methods),
                       check_exact=True)


def test_summaries_of_an_irregular_layout_fall_back_to_the_per_group_path():
    """A line with fewer realisations (or a failed fit) is summarised group by group, with the same result."""
    real = _chunk_table(np.random.default_rng(6))
    real = real.drop(index=real.index[(real["line"] == "HA") & (real["realisation"] == 3)]).reset_index(drop=True)
    assert linefluxes._blocks(real, ["id", "component", "region", "grating", "line"]) is None
    real.loc[7, "flux"] = np.nan
    a, b = linefluxes._flux_summaries(real, 3.0), linefluxes._flux_summaries_by_group(real, 3.0)
    assert a.equals(b)
