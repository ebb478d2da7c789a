"""Spectra of every region of one galaxy in one grating (SPEC 4): the cube is read once."""

from ismcgm import extract
from ismcgm.io import read_cube, read_table
from ismcgm.maskio import masks_on_cube, read_masks
from ismcgm.workflow_script import run


def main():
    row = snakemake.params.row
    gid, grating, variant = row["id"], snakemake.wildcards.grating, snakemake.wildcards.variant
    cube = read_cube(snakemake.input.cube, gid)
    mask_dict, mask_wcs, _ = read_masks(snakemake.input.masks)
    carried, _ = masks_on_cube(mask_dict, mask_wcs, cube.wcs, cube.sci.shape[1:],
                               read_table(snakemake.input.alignment), grating)
    spectra = extract.region_spectra(cube, carried)
    for (component, region, ext), path in zip(snakemake.params.regions, snakemake.output):
        wave, flux, err, nspax = spectra[ext]
        meta = {"ID": gid, "COMPONENT": component, "REGION": region, "GRATING": grating,
                "Z": row["z"], "VARIANT": variant, "NSPAX": nspax}
        extract.write_spectrum(path, wave, flux, err, meta)


run(snakemake, main)
