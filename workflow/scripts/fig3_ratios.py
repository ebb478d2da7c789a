"""Figure 3: ISM vs CGM line ratios."""

from ismcgm.io import read_table
from ismcgm.plots.fig3_ratios import plot_fig3
from ismcgm.workflow_script import run

run(snakemake, lambda: plot_fig3(read_table(snakemake.input.ratios), read_table(snakemake.input.stats),
                                 snakemake.output.pdf, snakemake.output.png, synthetic=snakemake.params.synthetic,
                                 mass_edges=snakemake.params.mass_bins))
