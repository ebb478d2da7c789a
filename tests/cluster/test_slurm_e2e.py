"""SLURM end-to-end check (tests/cluster/slurm_e2e.sh): the test config run
through profiles/slurm on a throw-away single-node SLURM cluster must give
byte-identical tables to a local run.

Not part of the default run: it installs packages and starts daemons as root
and takes about a quarter of an hour.  Run it with ``ISMCGM_SLURM=1 pytest
tests/cluster``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("slurm_e2e.sh")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("ISMCGM_SLURM") != "1",
                       reason="SLURM end-to-end check: set ISMCGM_SLURM=1 (root, Debian/Ubuntu)"),
]


def test_slurm_run_matches_local_run():
    env = dict(os.environ)
    # Reuse this interpreter's environment when it already has the SLURM plugin
    # (pip install -e '.[test,slurm]'); otherwise the script makes its own venv.
    in_venv = sys.prefix != sys.base_prefix
    if "VENV" not in env and in_venv and importlib.util.find_spec("snakemake_executor_plugin_slurm"):
        env["VENV"] = sys.prefix
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=3 * 3600)
    assert proc.returncode == 0, f"{SCRIPT.name} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
