"""[C II] of every region of one galaxy from its ALMA cube (SPEC 11)."""

from ismcgm import cii
from ismcgm.io import read_cube, write_table
from ismcgm.workflow_script import run


def main():
    row, par, inp = snakemake.params.row, snakemake.params, snakemake.input
    gid = row["id"]
    alma = cii.read_alma_cube(inp.cube, gid)
    table, _ = cii.measure_galaxy(alma, inp.masks, None, gid, row["z"], par.seed, n_mc=par.n_mc,
                                  n_gauss=par.n_gauss, detect_snr=par.detect_snr)
    factors = cii.ha_beam_factors_from_cube(read_cube(inp.ha_cube, gid), inp.masks, row["z"], row["ifu_psf_fwhm"],
                                            alma.beam, gid)
    by_region = {cii.region_names(gid, ext): f for ext, f in factors.items()}
    table["ha_beam_factor"] = [by_region[key] for key in zip(table.component, table.region)]
    write_table(cii.cii_line_flux_rows(table), snakemake.output[0],
                comment="[C II] 158 um per region (line_fluxes format, grating 'alma'); fluxes in erg s^-1 cm^-2; "
                        "ha_beam_factor = sum_mask(Ha at the ALMA beam) / sum_mask(Ha)")


run(snakemake, main)
