"""The map panel of every galaxy (issue 18) from its MAPS FITS, with the ISM/CGM mask contours."""

from ismcgm.maskio import read_masks
from ismcgm.plots.maps_panel import plot_maps, title_of
from ismcgm.workflow_script import run


def main():
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    for gid, maps, masks, pdf, png in zip(par.galaxies, inp.maps, inp.masks, out.pdf, out.png):
        region_masks, _, _ = read_masks(masks)
        plot_maps(maps, region_masks, pdf, png, title=title_of(maps, gid), synthetic=par.synthetic)


run(snakemake, main)
