"""Concatenate per-galaxy CSV tables into one (rows in input order)."""

import pandas as pd

from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    df = pd.concat([read_table(p) for p in snakemake.input], ignore_index=True)
    write_table(df, snakemake.output[0])


run(snakemake, main)
