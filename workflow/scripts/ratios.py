"""Line ratios of every component and region, formed realisation by realisation (SPEC 7)."""

import pandas as pd

from ismcgm import cii, ratios
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    inp = snakemake.input
    # [C II] at the IFU resolution (beam spill between the regions undone): cii.native_resolution
    tables = [read_table(inp.fluxes)] + [cii.native_resolution(read_table(p)) for p in inp.cii]
    fluxes = ratios.preferred_grating(pd.concat(tables, ignore_index=True))
    cii_real = [pd.read_parquet(p) for p in inp.cii_realisations]
    real = ratios.realisation_fluxes(pd.read_parquet(inp.realisations),
                                     pd.concat(cii_real, ignore_index=True) if cii_real else None)
    samples = pd.DataFrame(snakemake.params.samples)
    table = ratios.compute_ratios(fluxes, samples, realisations=real)
    write_table(table, snakemake.output[0], comment=ratios.TABLE_COMMENT)


run(snakemake, main)
