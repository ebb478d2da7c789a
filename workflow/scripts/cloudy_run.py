"""Run Cloudy on one deck (SPEC 9); only used when cloudy.executable is set."""

from ismcgm.cloudy import run_cloudy
from ismcgm.workflow_script import run


def main():
    run_cloudy(snakemake.params.executable, snakemake.wildcards.model, snakemake.input.deck,
               snakemake.input.line_list, snakemake.output.out, snakemake.output.lines,
               sed_file=snakemake.params.sed_file)


run(snakemake, main)
