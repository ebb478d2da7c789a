"""ISM and CGM masks of one galaxy for one mask variant (SPEC 2-3)."""

import pandas as pd

from ismcgm import cii, masks
from ismcgm.io import read_cube, read_image, read_table, write_table
from ismcgm.maskio import aligned_wcs, alignment_shift, write_masks
from ismcgm.workflow_script import run


def main():
    row = snakemake.params.row
    gid = row["id"]
    image = read_image(snakemake.input.image, gid)
    cube = read_cube(snakemake.input.cube, gid)
    alignment = read_table(snakemake.input.alignment)
    shift_ra, shift_dec = alignment_shift(alignment)
    aligned = aligned_wcs(cube.wcs, alignment)
    alma = cii.read_alma_cube(snakemake.input.alma[0], gid) if snakemake.input.alma else None
    result = masks.make_masks(image, cube, aligned, row, snakemake.params.mask, alma=alma)
    rows = []
    for component, region, ext in snakemake.params.components:
        info = result["info"][ext]
        rows.append({"id": gid, "component": component, "region": region, "n_spaxels": info["n_spaxels"],
                     "area_arcsec2": info["area_arcsec2"], "r_cgm_kpc": info["r_cgm_kpc"],
                     "cgm_outer": result["cgm_outer_used"], "r_cii_kpc": result["cgm_outer_info"].get("r_cii_kpc")})
    meta = {"ID": gid, "Z": row["z"], "SHIFTRA": shift_ra, "SHIFTDEC": shift_dec,
            "CGMUSED": result["cgm_outer_used"]}
    if "r_cii_kpc" in result["cgm_outer_info"]:
        meta["RCIIKPC"] = result["cgm_outer_info"]["r_cii_kpc"]
    write_masks(snakemake.output.masks, result, meta=meta)
    write_table(pd.DataFrame(rows), snakemake.output.regions)


run(snakemake, main)
