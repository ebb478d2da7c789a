"""Masks of one galaxy for one mask variant (SPEC 2-3), the spectra of every region in every grating
(SPEC 4) and the transfer matrix of its ISM and halo terms (ismcgm.decompose): each cube is read once."""

import pandas as pd

from ismcgm import cii, decompose, extract, masks
from ismcgm.io import read_cube, read_image, read_table, write_table
from ismcgm.maskio import aligned_wcs, alignment_shift, masks_on_cube, read_masks, write_masks
from ismcgm.samples import reference_grating
from ismcgm.workflow_script import run


def make_masks(row, image, cube, alignment, out):
    """Masks of the variant on the reference cube's aligned grid and the regions table row per region; returns
    :func:`ismcgm.masks.make_masks`'s result."""
    gid, inp = row["id"], snakemake.input
    shift_ra, shift_dec = alignment_shift(alignment)
    alma = cii.read_alma_cube(inp.alma[0], gid) if inp.alma else None
    result = masks.make_masks(image, cube, aligned_wcs(cube.wcs, alignment), row, snakemake.params.mask, alma=alma)
    rows = []
    for component, region, ext in snakemake.params.regions:
        info = result["info"][ext]
        rows.append({"id": gid, "component": component, "region": region, "n_spaxels": info["n_spaxels"],
                     "area_arcsec2": info["area_arcsec2"], "r_cgm_kpc": info["r_cgm_kpc"],
                     "cgm_outer": result["cgm_outer_used"], "r_cii_kpc": result["cgm_outer_info"].get("r_cii_kpc")})
    meta = {"ID": gid, "Z": row["z"], "SHIFTRA": shift_ra, "SHIFTDEC": shift_dec,
            "CGMUSED": result["cgm_outer_used"]}
    if "r_cii_kpc" in result["cgm_outer_info"]:
        meta["RCIIKPC"] = result["cgm_outer_info"]["r_cii_kpc"]
    write_masks(out.masks, result, meta=meta)
    write_table(pd.DataFrame(rows), out.regions)
    return result


def write_spectra(row, grating, cube, alignment, paths):
    """The spectrum of every region of the galaxy in one grating."""
    gid, regions = row["id"], snakemake.params.regions
    mask_dict, mask_wcs, _ = read_masks(snakemake.output.masks)
    carried, _ = masks_on_cube(mask_dict, mask_wcs, cube.wcs, cube.sci.shape[1:], alignment, grating)
    spectra = extract.region_spectra(cube, carried)
    for (component, region, ext), path in zip(regions, paths):
        wave, flux, err, nspax = spectra[ext]
        meta = {"ID": gid, "COMPONENT": component, "REGION": region, "GRATING": grating,
                "Z": row["z"], "VARIANT": snakemake.wildcards.variant, "NSPAX": nspax}
        extract.write_spectrum(path, wave, flux, err, meta)


def main():
    row, par, out = snakemake.params.row, snakemake.params, snakemake.output
    cubes = {g: read_cube(path, row["id"]) for g, path in zip(par.gratings, snakemake.input.cubes)}
    alignment = read_table(snakemake.input.alignment)
    image, ref = read_image(snakemake.input.image, row["id"]), cubes[reference_grating(row)]
    result = make_masks(row, image, ref, alignment, out)
    n = len(par.regions)
    for i, (grating, cube) in enumerate(cubes.items()):
        write_spectra(row, grating, cube, alignment, out.spectra[i * n:(i + 1) * n])
    # the masks' PSF-matched continuum on the reference grid is the decomposition's ISM term
    transfer, posterior = decompose.transfer_from_masks(result["regions"], result["ism_sb"], result["background"],
                                                        ref, aligned_wcs(ref.wcs, alignment), row, par.halo_fit,
                                                        posterior=True)
    write_table(transfer, out.transfer)
    write_table(posterior, out.transfer_h, comment=decompose.POSTERIOR_COMMENT)


run(snakemake, main)
