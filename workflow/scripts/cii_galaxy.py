"""[C II] of every region of one galaxy from its ALMA cube (SPEC 11)."""

from ismcgm import cii
from ismcgm.io import atomic_path, read_cube, write_table
from ismcgm.maskio import read_masks
from ismcgm.workflow_script import run


def main():
    row, par, inp = snakemake.params.row, snakemake.params, snakemake.input
    gid = row["id"]
    alma = cii.read_alma_cube(inp.cube, gid)
    masks = read_masks(inp.masks)  # (regions, aligned WCS, headers), read once for both steps
    table, spectra = cii.measure_galaxy(alma, masks[0], masks[1], gid, row["z"], par.seed, n_mc=par.n_mc,
                                        n_gauss=par.n_gauss, detect_snr=par.detect_snr)
    names, t = cii.transfer_matrix_from_cube(read_cube(inp.ha_cube, gid), masks, row["z"], row["ifu_psf_fwhm"],
                                             alma.beam, gid)
    real = cii.realisation_table(table, spectra, names, t, gid)
    table = cii.spill_corrected(table, names, t, gid)
    with atomic_path(snakemake.output.realisations) as tmp:
        real.to_parquet(tmp, index=False)
    write_table(cii.cii_line_flux_rows(table), snakemake.output.fluxes,
                comment="[C II] 158 um per region (line_fluxes format, grating 'alma'); fluxes in erg s^-1 cm^-2; "
                        "flux_native = [C II] at the IFU resolution (beam spill undone, ismcgm.cii.spill_corrected)")


run(snakemake, main)
