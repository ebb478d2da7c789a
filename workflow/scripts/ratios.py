"""Line ratios of every component and region from the dust-corrected fluxes (SPEC 7)."""

import pandas as pd

from ismcgm import cii, ratios
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    # [C II] at the IFU resolution (beam spill between the regions undone): cii.native_resolution
    tables = [read_table(snakemake.input.fluxes)] + [cii.native_resolution(read_table(p)) for p in snakemake.input.cii]
    fluxes = ratios.preferred_grating(pd.concat(tables, ignore_index=True))
    samples = pd.DataFrame(snakemake.params.samples)
    table = ratios.compute_ratios(fluxes, samples)
    write_table(table, snakemake.output[0], comment=ratios.TABLE_COMMENT)


run(snakemake, main)
