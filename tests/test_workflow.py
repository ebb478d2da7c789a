"""The workflow end to end on the small test config, caching, and config errors (issue 3)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import REPO, run_snakemake

#: every test here runs the workflow (pytest -m 'not e2e' skips them)
pytestmark = pytest.mark.e2e


def test_e2e_builds_the_mock_survey(e2e):
    samples = pd.read_csv(e2e / "results/mock/samples.tsv", sep="\t", keep_default_na=False)
    assert len(samples) == 4
    assert samples["merger"].astype(str).str.lower().eq("true").sum() >= 1
    for _, row in samples.iterrows():
        for col in ("cube_g235m", "cube_g395m", "cube_g395h", "image", "alma_cube"):
            if row[col]:
                assert (e2e / row[col]).is_file(), row[col]
        assert (e2e / f"results/mock/{row['id']}/{row['id']}_truth.fits").is_file()
    truth = json.loads((e2e / "results/mock/truth.json").read_text())
    assert "SYNTHETIC" in truth["label"]
    assert set(truth["galaxies"]) == set(samples["id"])


def test_second_run_does_nothing(e2e):
    proc = run_snakemake(e2e, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _bad(tmp_path, text):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    proc = run_snakemake(tmp_path, "-n", configfiles=(cfg,), check=False)
    assert proc.returncode != 0
    assert not (tmp_path / "results").exists()
    err = proc.stdout + proc.stderr
    lines = [ln for ln in err.splitlines() if "-- fix:" in ln]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "text, words",
    [
        ("mock:\n  n_galxies: 3\n", ["n_galxies", "mock"]),
        ("mock:\n  n_galaxies: -3\n", ["mock.n_galaxies"]),
        ("samples: no_such_table.tsv\n", ["no_such_table.tsv"]),
        ("variants: [nosuch]\n", ["nosuch", "masks"]),
        ("mc:\n  n_realisations: 1\n", ["mc.n_realisations"]),
    ],
)
def test_bad_config_is_one_line_before_any_job(tmp_path, text, words):
    line = _bad(tmp_path, text)
    for w in words:
        assert w in line


def test_sample_id_with_slash(tmp_path):
    table = tmp_path / "s.tsv"
    cols = "id\tz\tlogmstar\tra\tdec\tcube_g235m\tcube_g395m\timage\timage_filter\timage_psf_fwhm\tifu_psf_fwhm\tmerger\n"
    table.write_text(cols + "bad/id\t5.0\t10\t150\t2\ta.fits\tb.fits\tc.fits\tF277W\t0.09\t0.19\tFalse\n")
    line = _bad(tmp_path, f"samples: {table}\n")
    assert "bad/id" in line and str(table) in line


def test_sample_table_missing_column(tmp_path):
    table = tmp_path / "s.tsv"
    table.write_text("id\tz\nmockless\t5.0\n")
    line = _bad(tmp_path, f"samples: {table}\n")
    assert "missing column" in line and str(table) in line


def test_override_only_mock_seed(tmp_path):
    cfg = tmp_path / "seed.yaml"
    cfg.write_text("mock:\n  seed: 12345\n")
    proc = run_snakemake(tmp_path, "-n", configfiles=(REPO / "tests/config/test.yaml", cfg))
    assert "mock_galaxy_" in proc.stdout


def test_per_galaxy_jobs_one_each_with_a_benchmark(e2e):
    """One mock job and one masks+spectra job per galaxy (and variant), one benchmark file per per-galaxy or
    per-chunk job (issue 17): 4 galaxies, 12 realisations in chunks of 6, one mc_fit job per chunk for both
    gratings."""
    bench = e2e / "results/benchmarks"
    counts = {kind: len(list((bench / kind).rglob("*.tsv"))) for kind in ("mock", "align", "extract", "mc", "cii",
                                                                           "resolved")}
    assert counts == {"mock": 4, "align": 4, "extract": 4, "mc": 4 * 2, "cii": 4, "resolved": 4}, counts
    header = (bench / "mock" / "mock01.tsv").read_text().splitlines()[0].split("\t")
    assert header[:2] == ["s", "h:m:s"] and "cpu_time" in header
