"""The MUSE path end to end (issue 16): a small SYNTHETIC MUSE WFM mock survey run with
``config/muse_example.yaml``: MUSE-format cubes (DATA/STAT, 1e-20 erg/s/cm2/A, air wavelengths)
through masks, extraction, fits, ratios and the validation against the injected truth."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from ismcgm import validation
from ismcgm.io import read_table
from tests.conftest import REPO, run_snakemake, true_fluxes

pytestmark = pytest.mark.e2e

#: a smaller survey than the example (3 galaxies, few realisations) for the test's run time
SMALL = """mock:
  n_galaxies: 3
  ifu_npix: 31
mc:
  n_realisations: 12
  chunk_size: 12
stats:
  n_mc: 20
resolved:
  enabled: false
nii_bias:
  n_trials: 10
"""


@pytest.fixture(scope="module")
def muse_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("muse")
    small = workdir / "small.yaml"
    small.write_text(SMALL)
    run_snakemake(workdir, "--cores", "2", configfiles=(REPO / "config" / "muse_example.yaml", small))
    return workdir


def test_muse_lines_measured_at_the_injected_velocity(muse_run):
    """Every line from [O II] to [S II] is fitted in the MUSE cubes at the injected velocity: an
    air/vacuum mix-up would shift them by ~83 km/s (n_air - 1 = 2.8e-4)."""
    truth = json.loads((muse_run / "results/mock/truth.json").read_text())["galaxies"]
    lf = read_table(muse_run / "results/tables/default/line_fluxes.csv")
    assert set(lf["grating"]) == {"muse"}
    ism = lf[(lf["region"] == "ISM")]
    for line in ("OII3728", "HB", "OIII5007", "HA", "NII6583", "SII6716", "SII6731"):
        assert line in set(ism["line"]), line
    ha = ism[(ism["line"] == "HA") & ism["detected"]]
    assert len(ha) >= 3
    dv = [row.velocity_kms - truth[row.id]["velocity_kms"] for row in ha.itertuples()]
    assert np.max(np.abs(dv)) < 20.0, dv


def test_muse_validation_pulls(muse_run):
    """The validation ran on the MUSE survey; the flux pulls are finite and of order one."""
    summary = json.loads((muse_run / "results/validation/default/summary.json").read_text())
    assert summary
    pulls = read_table(muse_run / "results/validation/default/flux_pulls.csv")
    good = pulls[pulls["n"] >= 3]
    assert len(good) >= 4
    assert np.all(np.isfinite(good["std_pull"])) and np.all(good["std_pull"].between(0.3, 3.0))


#: Mock seeds over which the MUSE flux pulls are pooled (the example's seed 3, then 4 and 5): one draw of
#: 12 galaxies gives ~20-28 lines per line name, so a pull std has a sampling error of ~0.14 by itself.
MUSE_SEEDS = (3, 4, 5)


@pytest.mark.skipif(not os.environ.get("ISMCGM_SLOW"), reason="set ISMCGM_SLOW=1 (three full MUSE example runs)")
def test_muse_flux_pulls_pooled_over_mock_seeds(tmp_path_factory):
    """The example config as it is, on three mock seeds: every line's pull std in 0.85-1.15, pooled.

    Lines detectable at the truth (true S/N >= 3, :func:`ismcgm.validation.flux_pulls`), as the
    NIRSpec check in ``tests/test_validation_default.py``.
    """
    rows = []
    for seed in MUSE_SEEDS:
        work = tmp_path_factory.mktemp(f"muse_seed{seed}")
        cfg = work / "seed.yaml"
        cfg.write_text(f"mock:\n  seed: {seed}\n")
        run_snakemake(work, "--cores", "all", "results/tables/default/line_fluxes.csv", "results/mock/samples.tsv",
                      configfiles=(REPO / "config" / "muse_example.yaml", cfg))
        fluxes = read_table(work / "results/tables/default/line_fluxes.csv")
        pulls, _ = validation.flux_pulls(fluxes, true_fluxes(work)[validation.TRUE_COLUMNS])
        rows.append(pulls)
    pooled = pd.concat(rows, ignore_index=True).groupby("line")["pull"].agg(["size", "median", "std"])
    for line, r in pooled.iterrows():
        assert 0.85 <= r["std"] <= 1.15, (line, r.to_dict())
