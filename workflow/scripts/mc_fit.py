"""Draw and fit one chunk of Monte Carlo realisations (SPEC 4-5)."""

from ismcgm import extract, mc
from ismcgm.io import atomic_path, read_cube, read_table
from ismcgm.linefluxes import fit_chunk
from ismcgm.maskio import masks_on_cube, read_masks
from ismcgm.workflow_script import run


def cube_level_draws(par, wc):
    """Literal cube-level draws: perturb every voxel and extract (``mc.level: cube``)."""
    cube = read_cube(snakemake.input.cube, par.row["id"])
    mask_dict, mask_wcs, _ = read_masks(snakemake.input.masks)
    carried, _ = masks_on_cube(mask_dict, mask_wcs, cube.wcs, cube.sci.shape[1:],
                               read_table(snakemake.input.alignment), wc.grating, [ext for _, _, ext in par.regions])
    return mc.region_cube_draws(cube, carried, par.regions, par.seed, wc.grating, par.realisations)


def main():
    par, wc = snakemake.params, snakemake.wildcards
    spectra = []
    for (component, region, _), path in zip(par.regions, snakemake.input.spectra):
        s = extract.read_spectrum(path)
        spectra.append((component, region, s.wave_um, s.flux, s.err))
    draws = cube_level_draws(par, wc) if par.level == "cube" else None
    table = fit_chunk(par.row["id"], spectra, par.row["z"], wc.grating, par.realisations, par.seed, par.fit, draws)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_parquet(tmp, index=False)


run(snakemake, main)
