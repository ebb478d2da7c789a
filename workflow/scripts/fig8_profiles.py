"""Figure 8: line ratios against radius (issue 18)."""

from ismcgm.io import read_table
from ismcgm.plots.fig8_profiles import plot_fig8
from ismcgm.resolved import PROFILE_RATIOS
from ismcgm.workflow_script import run


def main():
    inp = snakemake.input
    profiles = read_table(inp.profiles)
    ratios = PROFILE_RATIOS + (("CII_HA",) if (profiles["ratio"] == "CII_HA").any() else ())
    plot_fig8(profiles, read_table(inp.median), read_table(inp.ratios), read_table(inp.annuli), snakemake.output.pdf,
              snakemake.output.png, synthetic=snakemake.params.synthetic, ratios=ratios)


run(snakemake, main)
