"""Measure the IFU-to-image astrometric shift of one galaxy (SPEC 1)."""

import pandas as pd

from ismcgm import masks
from ismcgm.io import read_cube, read_image, write_table
from ismcgm.workflow_script import run


def main():
    row = snakemake.params.row
    # the gratings share the pointing: their line-free continua are fitted jointly
    cubes = [read_cube(path, row["id"]) for path in snakemake.input.cubes]
    image = read_image(snakemake.input.image, row["id"])
    shift = masks.align(cubes, image, row)
    df = pd.DataFrame(
        [{"id": row["id"], "grating": g, **shift._asdict()} for g in snakemake.params.gratings]
    )
    write_table(df, snakemake.output[0])


run(snakemake, main)
