"""Import diet of the per-galaxy / per-chunk jobs (issue 17, item 1).

The Monte Carlo and extraction jobs run hundreds of times; each pays its
imports.  Their modules must not pull in the plotting, dask (through
reproject) or lmfit stacks, nor astropy.cosmology (built lazily by
:func:`ismcgm.constants.cosmology`).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: What a job's script imports (see workflow/scripts/mc_fit.py and extract.py).
JOB_IMPORTS = {
    "mc_fit": "from ismcgm import extract, mc; from ismcgm.io import atomic_path, read_cube, read_table; "
              "from ismcgm.linefluxes import fit_chunk; from ismcgm.maskio import masks_on_cube, read_masks; "
              "from ismcgm.workflow_script import run",
    "extract": "from ismcgm import extract; from ismcgm.io import read_cube, read_table; "
               "from ismcgm.maskio import masks_on_cube, read_masks; from ismcgm.workflow_script import run",
}

HEAVY = ("matplotlib", "dask", "lmfit", "reproject", "astropy.cosmology")


@pytest.mark.parametrize("job", sorted(JOB_IMPORTS))
def test_job_imports_pull_in_no_heavy_stack(job):
    code = JOB_IMPORTS[job] + "; import sys; print(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not out, f"{job} job imports {out}"


def test_lazy_cosmology_is_the_spec_one():
    from astropy.cosmology import FlatLambdaCDM

    from ismcgm import constants

    ref = FlatLambdaCDM(H0=70.0, Om0=0.3)
    assert constants.COSMO is constants.cosmology()
    assert constants.proper_kpc_per_arcsec(5.0) == ref.kpc_proper_per_arcmin(5.0).value / 60.0
