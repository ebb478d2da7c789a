"""N/O per component and region, and Delta log(N/O) CGM - ISM, from the MC realisations (SPEC 10)."""

import pandas as pd

from ismcgm.abundances import abundance_delta_table, abundance_input_from_realisations, abundance_table
from ismcgm.io import write_table
from ismcgm.workflow_script import run


def main():
    real = pd.read_parquet(snakemake.input[0])
    inp = abundance_input_from_realisations(real, detect_snr=snakemake.params.detect_snr)
    write_table(abundance_table(inp), snakemake.output.table)
    write_table(abundance_delta_table(inp), snakemake.output.delta)


run(snakemake, main)
