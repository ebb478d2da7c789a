"""Statistics per ratio over all components (SPEC 8)."""

from ismcgm import stats
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    table = read_table(snakemake.input[0])
    seed, n_mc = snakemake.params.seed, snakemake.params.n_mc
    statistics = stats.statistics_table(table, seed, n_mc)
    write_table(statistics, snakemake.output.stats)
    write_table(stats.headline_table(statistics), snakemake.output.headline)  # report landing page (no comment)
    write_table(stats.mass_trend_table(table, snakemake.params.mass_bins), snakemake.output.mass)
    write_table(stats.d11_draws_table(table, seed, n_mc), snakemake.output.d11)


run(snakemake, main)
