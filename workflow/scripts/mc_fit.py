"""Draw and fit one chunk of Monte Carlo realisations (SPEC 4-5)."""

from ismcgm import extract, masks, mc
from ismcgm.io import atomic_path, read_cube, read_table
from ismcgm.linefluxes import fit_chunk
from ismcgm.workflow_script import run


def cube_level_draws(par, wc, spectra):
    """Literal cube-level draws: perturb every voxel and extract (``mc.level: cube``)."""
    cube = read_cube(snakemake.input.cube, par.row["id"])
    mask_dict, mask_wcs, _ = masks.read_masks(snakemake.input.masks)
    align = read_table(snakemake.input.alignment).set_index("grating").loc[wc.grating]
    cube_wcs = masks.shifted_wcs(cube.wcs, align["shift_ra_arcsec"], align["shift_dec_arcsec"])
    factor = extract.flambda_factor(cube.wave_um, cube.pixar_sr)
    draws = {}
    for component, region, ext in par.regions:
        m = extract.carry_mask(mask_dict[ext], mask_wcs, cube_wcs, cube.sci.shape[1:])

        def extractor(sci, m=m):
            return extract.sum_region(sci, m, factor)

        draws[(component, region)] = mc.cube_realisations(cube.sci, cube.err, m, extractor, par.seed,
                                                          component, region, wc.grating, par.realisations)
    return draws


def main():
    par, wc = snakemake.params, snakemake.wildcards
    spectra = []
    for (component, region, _), path in zip(par.regions, snakemake.input.spectra):
        s = extract.read_spectrum(path)
        spectra.append((component, region, s.wave_um, s.flux, s.err))
    draws = cube_level_draws(par, wc, spectra) if par.level == "cube" else None
    table = fit_chunk(par.row["id"], spectra, par.row["z"], wc.grating, par.realisations, par.seed, par.fit, draws)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_parquet(tmp, index=False)


run(snakemake, main)
