"""Statistics of the intrinsic component ratios (SPEC 8 statistics on ismcgm.decompose's terms)."""

from ismcgm import stats
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    table = read_table(snakemake.input[0])
    write_table(stats.statistics_table(table, snakemake.params.seed, snakemake.params.n_mc), snakemake.output[0])


run(snakemake, main)
