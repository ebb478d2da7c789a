"""[C II] of every region of one galaxy from its ALMA cube (SPEC 11)."""

from ismcgm import cii
from ismcgm.io import write_table
from ismcgm.workflow_script import run


def main():
    row, par = snakemake.params.row, snakemake.params
    table, _ = cii.measure_galaxy(snakemake.input.cube, snakemake.input.masks, None, row["id"], row["z"],
                                  par.seed, n_mc=par.n_mc, n_gauss=par.n_gauss, detect_snr=par.detect_snr)
    write_table(cii.cii_line_flux_rows(table), snakemake.output[0],
                comment="[C II] 158 um per region (line_fluxes format, grating 'alma'); fluxes in erg s^-1 cm^-2")


run(snakemake, main)
