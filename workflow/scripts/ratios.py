"""Line ratios of every component and region from the dust-corrected fluxes (SPEC 7)."""

import pandas as pd

from ismcgm import ratios
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    fluxes = ratios.preferred_grating(read_table(snakemake.input.fluxes))
    samples = pd.DataFrame(snakemake.params.samples)
    table = ratios.compute_ratios(fluxes, samples)
    write_table(table, snakemake.output[0], comment=ratios.TABLE_COMMENT)


run(snakemake, main)
