"""Measure the IFU-to-image astrometric shift of one galaxy (SPEC 1)."""

import logging

import pandas as pd

from ismcgm import inputcheck
from ismcgm.align import align
from ismcgm.io import read_cube, read_image, write_table
from ismcgm.workflow_script import run


def main():
    row = snakemake.params.row
    # the gratings share the pointing: their line-free continua are fitted jointly
    cubes = [read_cube(path, row["id"]) for path in snakemake.input.cubes]
    image = read_image(snakemake.input.image, row["id"])
    # the first job to read the data checks the redshift and the image before measuring anything
    warning = inputcheck.check_redshift(cubes, row)
    if warning:
        logging.getLogger("ismcgm.inputcheck").warning(warning)
    inputcheck.check_image_source(image, row)
    shift = align(cubes, image, row)
    inputcheck.check_shift(shift, row, snakemake.input.cubes, snakemake.params.max_shift_arcsec)
    df = pd.DataFrame(
        [{"id": row["id"], "grating": g, **shift._asdict()} for g in snakemake.params.gratings]
    )
    write_table(df, snakemake.output[0])


run(snakemake, main)
