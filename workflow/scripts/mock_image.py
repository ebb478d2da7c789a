"""Write one mock-survey product (SYNTHETIC data): see ismcgm.mock."""

from ismcgm import mock as smock
from ismcgm.workflow_script import run

run(snakemake, lambda: smock.write_image(snakemake.params.plan, snakemake.output[0]))
