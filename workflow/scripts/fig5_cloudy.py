"""Figures 5 and 7: Cloudy Delta log(ratio) profiles with the observed boxes (SPEC 9)."""

from ismcgm.io import atomic_path, read_table
from ismcgm.cloudy import observed_boxes
from ismcgm.plots.fig5_cloudy import plot_fig5, plot_fig7
from ismcgm.workflow_script import run


def main():
    out = snakemake.output
    delta = read_table(snakemake.input.delta)
    boxes = observed_boxes(read_table(snakemake.input.stats), read_table(snakemake.input.regions))
    synthetic = snakemake.params.synthetic
    with atomic_path(out.fig5_pdf) as pdf, atomic_path(out.fig5_png) as png:
        plot_fig5(delta, boxes, pdf, png, synthetic=synthetic)
    with atomic_path(out.fig7_pdf) as pdf, atomic_path(out.fig7_png) as png:
        plot_fig7(delta, boxes, pdf, png, synthetic=synthetic)


run(snakemake, main)
