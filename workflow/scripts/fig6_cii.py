"""Figure 6: [C II]/Hα ISM vs CGM with the simulation values."""

from ismcgm.io import read_table
from ismcgm.plots.fig6_cii import plot_fig6
from ismcgm.workflow_script import run

run(snakemake, lambda: plot_fig6(read_table(snakemake.input.cii), read_table(snakemake.input.sims),
                                 snakemake.output.pdf, snakemake.output.png, synthetic=snakemake.params.synthetic,
                                 sim_profiles=read_table(snakemake.input.profiles)))
