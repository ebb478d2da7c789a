"""Everything Python of the workflow: config and sample-table validation, the
sample table, wildcard constraints and input functions."""

import pandas as pd
from snakemake.utils import validate, min_version

from ismcgm import io as sio
from ismcgm import mock as smock
from ismcgm.workflow_config import ConfigError, check_config, check_samples

min_version("9.0")


# ---------------------------------------------------------------- config
check_config(config, workflow.source_path("../schemas/config.schema.yaml"))

MOCK = config["samples"] == "mock"
RESULTS = "results"
VARIANTS = config["variants"]

# ---------------------------------------------------------------- samples
# The galaxy list is known at parse time: for the mock it is computed from the
# config (no data generated), for real data it is the sample table.
if MOCK:
    PLANS = {p["id"]: p for p in smock.plan_survey(config["mock"])}
    SAMPLES = sio.check_sample_table(pd.DataFrame(smock.sample_rows(PLANS.values(), f"{RESULTS}/mock")))
else:
    PLANS = {}
    SAMPLES = check_samples(config["samples"], workflow.source_path("../schemas/samples.schema.yaml"))

GALAXIES = list(SAMPLES.index)


wildcard_constraints:
    id="|".join(GALAXIES) if GALAXIES else "NONE",
    grating="g235m|g395m|g395h",
    variant="|".join(VARIANTS),


# ---------------------------------------------------------------- helpers
def gratings_of(gid):
    """Gratings of galaxy ``gid`` (G235M first, then G395M or G395H)."""
    return sio.galaxy_gratings(SAMPLES.loc[gid])


def cube_path(wildcards):
    return SAMPLES.loc[wildcards.id, f"cube_{wildcards.grating}"]


def mock_plan(product):
    """Input function giving the part of a mock galaxy's plan that ``product`` depends on.

    Passed as ``params`` so that a product is rebuilt only when its own
    physics changes (e.g. a new O3 shift does not rebuild images or ALMA cubes).
    """
    return lambda wildcards: smock.product_plan(PLANS[wildcards.id], product)


def mock_products():
    """Every file of the mock survey."""
    out = [f"{RESULTS}/mock/samples.tsv", f"{RESULTS}/mock/truth.json"]
    for gid in GALAXIES:
        out += list(smock.product_paths(PLANS[gid], f"{RESULTS}/mock").values())
    return out
