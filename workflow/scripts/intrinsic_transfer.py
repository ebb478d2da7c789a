"""Halo fit and transfer matrix of one galaxy's ISM and halo terms (ismcgm.decompose)."""

from ismcgm import decompose
from ismcgm.io import read_cube, read_image, read_table, write_table
from ismcgm.maskio import aligned_wcs
from ismcgm.workflow_script import run


def main():
    row = snakemake.params.row
    gid = row["id"]
    cube = read_cube(snakemake.input.cube, gid)
    aligned = aligned_wcs(cube.wcs, read_table(snakemake.input.alignment))
    table = decompose.transfer_from_inputs(read_image(snakemake.input.image, gid), cube, aligned,
                                           snakemake.input.masks, row)
    write_table(table, snakemake.output[0])


run(snakemake, main)
