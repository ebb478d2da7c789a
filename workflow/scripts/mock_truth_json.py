"""Write truth.json: the injected parameters of the SYNTHETIC mock survey."""

from ismcgm import mock as smock
from ismcgm.workflow_script import run

run(snakemake, lambda: smock.write_truth_json([smock.realise_plan(p) for p in snakemake.params.plans],
                                              snakemake.params.mock, snakemake.output[0]))
