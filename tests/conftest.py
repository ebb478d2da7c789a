"""Shared fixtures: the repository, a runner for Snakemake, and one end-to-end
run of the small test config (tests/config/test.yaml) shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / "tests" / "config" / "test.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(workdir, *args, configfiles=(TEST_CONFIG,), check=True, env=None):
    """Run the workflow in ``workdir``; returns the CompletedProcess."""
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += list(args)
    if configfiles:  # one flag, last: a repeated --configfile replaces the earlier ones
        cmd += ["--configfile", *map(str, configfiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def true_fluxes(workdir, variant="default"):
    """Noiseless line fluxes of a finished mock run through its masks (truth maps), as the validation rule does."""
    import pandas as pd

    from ismcgm import samples, validation
    from ismcgm.io import read_table
    from ismcgm.regions import galaxy_regions

    workdir = Path(workdir)
    s = samples.read_sample_table(workdir / "results/mock/samples.tsv")
    parts = []
    for gid, row in s.iterrows():
        regions = galaxy_regions(gid, row["merger"])
        cubes = {g: workdir / row[f"cube_{g}"] for g in samples.galaxy_gratings(row)}
        parts.append(validation.galaxy_true_fluxes(row, workdir / f"results/mock/{gid}/{gid}_truth.fits",
                                                   workdir / f"results/masks/{variant}/{gid}.fits",
                                                   read_table(workdir / f"results/alignment/{gid}.csv"), cubes,
                                                   regions))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="session")
def e2e(tmp_path_factory):
    """Workdir after one full run of the test config (``--cores 2``)."""
    workdir = tmp_path_factory.mktemp("e2e")
    run_snakemake(workdir, "--cores", "2")
    return workdir


def _config(*overrides) -> dict:
    """config.yaml updated by each override (section by section), schema defaults filled."""
    import yaml

    from ismcgm.workflow_config import check_config

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for override in overrides:
        for k, v in override.items():
            if isinstance(v, dict):
                cfg.setdefault(k, {}).update(v)
            else:
                cfg[k] = v
    check_config(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")
    return cfg


@pytest.fixture(scope="session")
def test_mock_cfg():
    """The test config's ``mock:`` section with the schema defaults filled."""
    import yaml

    return _config(yaml.safe_load(TEST_CONFIG.read_text()))["mock"]


def default_mock_cfg(**overrides) -> dict:
    """The default config's ``mock:`` section (schema defaults filled), with ``overrides``."""
    return {**_config()["mock"], **overrides}


def pytest_collection_modifyitems(config, items):
    """Every test that uses the workflow run (the ``e2e`` fixture) is an end-to-end test."""
    for item in items:
        if "e2e" in getattr(item, "fixturenames", ()) and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
