"""Intrinsic component ratios: the ISM and halo terms' fluxes, dust correction and ratios (ismcgm.decompose)."""

import logging

import pandas as pd

from ismcgm import decompose, ratios, stacking
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    inp, par = snakemake.input, snakemake.params
    transfers = {t["id"].iloc[0]: t for t in (read_table(p) for p in inp.transfers)}
    posteriors = {t["id"].iloc[0]: t for t in (read_table(p) for p in inp.posteriors)}
    cii_rows = pd.concat([read_table(p) for p in inp.cii], ignore_index=True) if inp.cii else None
    cii_real = pd.concat([pd.read_parquet(p) for p in inp.cii_realisations], ignore_index=True) if inp.cii else None
    fluxes, table, skipped, stacked = decompose.intrinsic_ratios(
        pd.read_parquet(inp.realisations), transfers, pd.DataFrame(par.samples), par.detect_snr,
        par.intrinsic_ha_hb, par.overlap, cii_rows, cii_real, posteriors, par.seed)
    if skipped:
        logging.getLogger(__name__).warning("transfer matrix not invertible, left out: %s", ", ".join(skipped))
    write_table(table, snakemake.output.ratios, comment=decompose.RATIOS_COMMENT + "\n" + ratios.TABLE_COMMENT)
    write_table(fluxes, snakemake.output.fluxes, comment=decompose.RATIOS_COMMENT)
    write_table(pd.concat(transfers.values(), ignore_index=True), snakemake.output.transfer,
                comment=decompose.TRANSFER_COMMENT)
    write_table(stacked, snakemake.output.stacked, comment=stacking.TABLE_COMMENT)


run(snakemake, main)
