"""Figure 1: ISM/CGM masks over continuum-subtracted Hα maps of every galaxy."""

from ismcgm.linemap import line_map
from ismcgm.maskio import read_masks
from ismcgm.io import read_cube
from ismcgm.plots.fig1_masks import plot_fig1
from ismcgm.workflow_script import run


def main():
    panels = []
    for row, mask_path, cube_path in zip(snakemake.params.rows, snakemake.input.masks, snakemake.input.cubes):
        regions, wcs, _ = read_masks(mask_path)
        cube = read_cube(cube_path, row["id"])
        panels.append({"id": row["id"], "ha_map": line_map(cube, row["z"], "HA"), "masks": regions,
                       "wcs": wcs, "z": row["z"], "merger": row["merger"]})
    plot_fig1(panels, snakemake.output.pdf, snakemake.output.png, synthetic=snakemake.params.synthetic)


run(snakemake, main)
