"""[N II] S/N bias test (SPEC 12): fitted/true [N II]6583 flux per S/N and its figure."""

from ismcgm.io import atomic_path, write_table
from ismcgm.niibias import nii_bias_table
from ismcgm.plots.nii_bias import plot_nii_bias
from ismcgm.workflow_script import run


def main():
    table = nii_bias_table(snakemake.params.cfg, seed=snakemake.params.seed)
    write_table(table, snakemake.output.table)
    with atomic_path(snakemake.output.pdf) as pdf, atomic_path(snakemake.output.png) as png:
        plot_nii_bias(table, pdf, png)


run(snakemake, main)
