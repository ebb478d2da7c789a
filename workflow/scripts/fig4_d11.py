"""Figure 4: d11 distributions and KS tests."""

from ismcgm.io import read_table
from ismcgm.plots.fig4_d11 import plot_fig4
from ismcgm.workflow_script import run

run(snakemake, lambda: plot_fig4(read_table(snakemake.input.ratios), read_table(snakemake.input.stats),
                                 read_table(snakemake.input.d11), snakemake.output.pdf, snakemake.output.png,
                                 synthetic=snakemake.params.synthetic))
