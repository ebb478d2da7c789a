"""Write the mock survey's sample table (the same TSV format a real user writes)."""

import pandas as pd

from ismcgm.io import atomic_path
from ismcgm.workflow_script import run


def main():
    df = pd.DataFrame(snakemake.params.table)
    with atomic_path(snakemake.output[0]) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


run(snakemake, main)
