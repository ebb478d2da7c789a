"""Figure 8: line ratios against radius (issue 18)."""

from ismcgm.io import read_table
from ismcgm.plots.fig8_profiles import plot_fig8
from ismcgm.workflow_script import run

inp = snakemake.input
run(snakemake, lambda: plot_fig8(read_table(inp.profiles), read_table(inp.median), read_table(inp.ratios),
                                 read_table(inp.annuli), snakemake.output.pdf, snakemake.output.png,
                                 synthetic=snakemake.params.synthetic))
