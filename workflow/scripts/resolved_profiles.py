"""Radial-profile tables of the sample: line fluxes, ratios per realisation, the median profile (issue 18)."""

import pandas as pd

from ismcgm import resolved
from ismcgm.io import read_chunks, read_table, write_table
from ismcgm.linefluxes import TABLE_COMMENT as FLUX_COMMENT
from ismcgm.workflow_script import run


def main():
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    geometry = pd.concat([read_table(p) for p in inp.geometry], ignore_index=True)
    fluxes, real = resolved.gather_annuli(read_chunks(inp.chunks), par.detect_snr, par.intrinsic_ha_hb, par.overlap)
    cii_fluxes = pd.concat([read_table(p) for p in inp.cii], ignore_index=True)
    cii_real = pd.concat([pd.read_parquet(p) for p in inp.cii_realisations], ignore_index=True)
    profiles = resolved.profile_ratios(fluxes, real, pd.DataFrame(par.samples), geometry, cii_fluxes, cii_real)
    if len(cii_fluxes):
        fluxes = pd.concat([fluxes, cii_fluxes.reindex(columns=fluxes.columns)], ignore_index=True)
    write_table(fluxes, out.fluxes, comment="Line fluxes of the annuli (region = annulus, radii in radial_annuli.csv)\n"
                + FLUX_COMMENT)
    write_table(profiles, out.full, comment=resolved.TABLE_COMMENT)
    write_table(profiles.loc[:, resolved.PROFILE_COLUMNS], out.table, comment=resolved.TABLE_COMMENT)
    write_table(geometry, out.annuli, comment="annuli of the radial profiles: spaxels, fractions of them in the "
                                              "component's ISM/CGM masks, the masks' circularised radii [kpc]")
    median = resolved.median_profile(profiles, par.seed)
    write_table(median, out.median, comment="sample median radial profile per ratio (components with a value); "
                                            f"p16/p84: {resolved.N_BOOTSTRAP} bootstrap medians, components "
                                            "resampled and each point redrawn within its errors")


run(snakemake, main)
