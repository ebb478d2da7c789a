"""Radial profiles of one galaxy: annuli, stacked spectra, keyed Monte Carlo fits of all realisations (issue 18)."""

from ismcgm import masks, resolved
from ismcgm import samples as sio
from ismcgm.io import atomic_path, read_cube, read_table, write_table
from ismcgm.workflow_script import run


def main():
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    row, gid = par.row, par.row["id"]
    cubes = {g: read_cube(p, gid) for g, p in zip(par.gratings, inp.cubes)}
    region_masks, mask_wcs, headers = masks.read_masks(inp.masks)
    align = read_table(inp.alignment).set_index("grating")
    aligned = {g: masks.shifted_wcs(c.wcs, align.loc[g, "shift_ra_arcsec"], align.loc[g, "shift_dec_arcsec"])
               for g, c in cubes.items()}
    ref = cubes[sio.reference_grating(row)]  # the masks live on its grid
    valid = ref.valid_spaxels
    excl = str(row.get("exclude_region", "") or "").strip()
    if excl and excl.lower() != "nan":
        valid = valid & ~masks.exclude_mask(excl, mask_wcs, valid.shape, gid)
    annuli, regions = resolved.annulus_masks(row, mask_wcs, valid.shape, par.edges, valid)
    geometry = resolved.annulus_table(gid, regions, annuli, region_masks, headers)
    masks.write_masks(out.annuli, annuli, mask_wcs, params=par.mask_params, meta={"ID": gid, "Z": row["z"]})
    spectra = resolved.stacked_spectra(cubes, aligned, annuli, mask_wcs, regions)
    chunks = resolved.fit_annuli(gid, row["z"], spectra, par.seed, par.n_mc, par.fit)
    write_table(geometry, out.geometry, comment="annuli of the radial profiles: spaxels, fractions in the ISM/CGM masks")
    with atomic_path(out.chunks) as tmp:
        chunks.to_parquet(tmp, index=False)

run(snakemake, main)
