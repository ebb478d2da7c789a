"""[C II]/Hα per region with the dust-corrected Hα, and Δ log(Hα/Hβ) CGM − ISM (SPEC 11)."""

import pandas as pd

from ismcgm import cii
from ismcgm.io import read_table, write_table
from ismcgm.ratios import preferred_grating
from ismcgm.workflow_script import run


def main():
    lines = [read_table(p) for p in snakemake.input.cii]
    cols = ["id", "component", "region", "cii_flux", "cii_flux_err", "detected", "cii_ha", "cii_ha_err",
            "delta_balmer"]
    if not lines:
        write_table(pd.DataFrame(columns=cols), snakemake.output[0])
        return
    cii_rows = pd.concat(lines, ignore_index=True)
    fluxes = preferred_grating(read_table(snakemake.input.fluxes))
    ratios = read_table(snakemake.input.ratios)
    table = cii.cii_ratio_table(cii_rows, fluxes, ratios, snr_detect=snakemake.params.detect_snr)
    table = cii.with_ratio_percentiles(table, ratios)  # the Monte Carlo CII_HA of ratios.csv
    write_table(table, snakemake.output[0],
                comment="cii_flux [erg s^-1 cm^-2]; cii_ha = F[CII]/F(Ha, dust-corrected), median over the Monte Carlo "
                        "realisations (ratios.csv CII_HA), cii_ha_p16/p84 its percentiles; "
                        "delta_balmer = log(Ha/Hb)_CGM - log(Ha/Hb)_ISM")


run(snakemake, main)
