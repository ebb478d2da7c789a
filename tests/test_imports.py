"""Import diet of the per-galaxy / per-chunk jobs (issue 17, item 1).

The per-galaxy and per-chunk jobs (mock, alignment, masks and extraction,
Monte Carlo fits, [C II]) run tens to thousands of times; each pays its
imports.  The imports of their scripts (read from ``workflow/scripts/``) must
not pull in the plotting, dask (through reproject) or lmfit stacks, nor
astropy.cosmology (built lazily by :func:`ismcgm.constants.cosmology`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"

#: The per-galaxy and per-chunk jobs, which run tens to thousands of times.
JOBS = ("mc_fit", "extract", "align", "mock_galaxy", "cii_galaxy", "resolved_galaxy")

HEAVY = ("matplotlib", "dask", "lmfit", "reproject", "astropy.cosmology")


def script_imports(job: str) -> str:
    """The import statements of ``workflow/scripts/<job>.py`` (so the test follows the script)."""
    tree = ast.parse((SCRIPTS / f"{job}.py").read_text())
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports, job
    return "; ".join(imports)


@pytest.mark.parametrize("job", JOBS)
def test_job_imports_pull_in_no_heavy_stack(job):
    code = script_imports(job) + "; import sys; print(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not out, f"{job} job imports {out}"


#: The package imports of the Snakefile and its rule files: paid by every ``snakemake`` call, the no-op
#: rerun included (issue 17: no-op <= 3 s), so they must not pull in the modelling/convolution stacks
#: (``ismcgm.imaging`` imports astropy.convolution where it convolves) nor scipy.optimize.
PARSE = ("from ismcgm import instrument, instruments, samples, mock, regions, cloudy; "
         "from ismcgm.mcfit import n_chunks, chunk_realisations; "
         "from ismcgm.workflow_config import ConfigError, check_config, check_samples, read_yaml_config")
PARSE_HEAVY = HEAVY + ("astropy.modeling", "astropy.convolution", "scipy.optimize")


def test_snakefile_parse_imports_stay_light():
    code = PARSE + "; import sys; print(' '.join(m for m in %r if m in sys.modules))" % (PARSE_HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not out, f"the Snakefile's imports pull in {out}"


def test_the_mock_writers_load_on_first_use():
    """``ismcgm.mock`` imports its plan only; a writer's name loads its module (PEP 562)."""
    code = ("import sys, ismcgm.mock as m; a = 'ismcgm.mock.ifu' in sys.modules; m.write_cube; "
            "print(a, 'ismcgm.mock.ifu' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_a_heavy_import_would_be_caught():
    """The check itself sees a heavy module pulled in through a package import."""
    code = "import ismcgm.plots; import sys; print(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "matplotlib" in out


def test_lazy_cosmology_is_the_spec_one():
    from astropy.cosmology import FlatLambdaCDM

    from ismcgm import constants

    ref = FlatLambdaCDM(H0=70.0, Om0=0.3)
    assert constants.COSMO is constants.cosmology()
    assert constants.proper_kpc_per_arcsec(5.0) == ref.kpc_proper_per_arcmin(5.0).value / 60.0


def test_the_monte_carlo_job_imports_no_pandas():
    """``mc_fit``'s imports (``ismcgm.mcfit``) carry no pandas (pyarrow still loads it when the chunk is written)."""
    code = script_imports("mc_fit") + "; import sys; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False"]
