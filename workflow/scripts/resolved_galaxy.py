"""One galaxy (issue 18): annuli and Voronoi bins, stacked spectra, keyed Monte Carlo fits; the MAPS FITS
(its panel is drawn by fig_maps.py)."""

import pandas as pd

from ismcgm import cii
from ismcgm import instrument as ins
from ismcgm import maskio, masks, resolved, voronoi
from ismcgm import samples as sio
from ismcgm.io import atomic_path, read_cube, read_table, write_table
from ismcgm.linemap import line_snr_maps
from ismcgm.workflow_script import run


def main():
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    row, gid = par.row, par.row["id"]
    cubes = {g: read_cube(p, gid) for g, p in zip(par.gratings, inp.cubes)}
    region_masks, mask_wcs, headers = maskio.read_masks(inp.masks)
    align = read_table(inp.alignment)
    aligned = {g: maskio.aligned_wcs(c.wcs, align, g) for g, c in cubes.items()}
    ref = cubes[sio.reference_grating(row)]  # the masks live on its grid
    valid = ref.valid_spaxels
    excl = str(row.get("exclude_region", "") or "").strip()
    if excl and excl.lower() != "nan":
        valid = valid & ~masks.exclude_mask(excl, mask_wcs, valid.shape, gid)
    scale = maskio.kpc_per_arcsec(headers, row["z"])  # the masks' kpc scale: no cosmology import here
    annuli, regions = resolved.annulus_masks(row, mask_wcs, valid.shape, par.edges, valid, scale)
    geometry = resolved.annulus_table(gid, regions, annuli, region_masks, headers)
    maskio.write_masks(out.annuli, annuli, mask_wcs, params=par.mask_params,
                       meta={"ID": gid, "Z": row["z"], "KPCAS": scale})
    spectra = resolved.stacked_spectra(cubes, aligned, annuli, mask_wcs, regions)
    chunks = resolved.fit_annuli(gid, row["z"], spectra, par.seed, par.n_mc, par.fit)
    write_table(geometry, out.geometry, comment="annuli of the radial profiles: spaxels, fractions in the ISM/CGM masks")
    with atomic_path(out.chunks) as tmp:
        chunks.to_parquet(tmp, index=False)
    cii_profile(out, par, row, inp.alma, annuli, mask_wcs, headers, ref)
    if par.voronoi["enabled"]:
        maps(out, par, row, cubes, aligned, region_masks, mask_wcs, scale)


def cii_profile(out, par, row, alma, annuli, mask_wcs, headers, ha_cube):
    """[C II] of the annuli on the ALMA grid, beam spill undone (empty tables without an ALMA cube)."""
    if alma:
        c = par.cii
        fluxes, real = resolved.annulus_cii(cii.read_alma_cube(alma[0], row["id"]), annuli, mask_wcs, headers, ha_cube,
                                            row, par.seed, c["n_realisations"], c["n_gauss"], par.detect_snr)
    else:
        fluxes, real = resolved.no_annulus_cii()
    write_table(fluxes, out.cii, comment="[C II] 158 um of the annuli (line_fluxes format, grating 'alma'), erg s^-1 "
                                         "cm^-2; flux_native = at the IFU resolution (beam spill between the annuli "
                                         "undone); no rows: no ALMA cube")
    with atomic_path(out.cii_realisations) as tmp:
        real.to_parquet(tmp, index=False)


def maps(out, par, row, cubes, aligned, region_masks, mask_wcs, kpc_per_arcsec):
    """Voronoi bins, their fits and ratios, the MAPS FITS and the bin table."""
    gid = row["id"]
    ref_grating = sio.reference_grating(row)
    cfg = par.voronoi
    line = cfg["line"]
    if line not in ins.lines_in_grating(ref_grating, row["z"]):
        line = "OIII5007"  # e.g. Halpha beyond the reference grating
    signal, noise = line_snr_maps(cubes[ref_grating], row["z"], line)
    bins, regions, binid = voronoi.voronoi_bins(row, region_masks, signal, noise, cfg["target_snr"])
    spectra = resolved.stacked_spectra(cubes, aligned, bins, mask_wcs, regions)
    chunks = resolved.fit_annuli(gid, row["z"], spectra, par.seed, par.n_mc, par.fit)
    fluxes, real = resolved.gather_annuli(chunks, par.detect_snr, par.intrinsic_ha_hb, par.overlap)
    samples = pd.DataFrame([{k: row[k] for k in ("id", "logmstar", "merger")}])
    ratios = resolved.profile_ratios(fluxes, real, samples, None)
    table = voronoi.bin_table(gid, regions, bins, signal, noise, mask_wcs, row, fluxes, ratios, ref_grating,
                              kpc_per_arcsec)
    write_table(table, out.bins, comment=f"Voronoi bins (vorbin, target S/N {cfg['target_snr']:g} on {line} per "
                                         "component's ISM+CGM footprint): geometry, kinematics, E(B-V), log ratios")
    voronoi.write_maps(out.maps, binid, table, fluxes, mask_wcs, meta={"ID": gid, "Z": row["z"], "REFLINE": line,
                                                                         "TARGETSN": cfg["target_snr"]},
                       ratios=resolved.PROFILE_RATIOS)


run(snakemake, main)
