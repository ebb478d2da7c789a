"""Draw and fit one chunk of Monte Carlo realisations of a galaxy, every region in every grating (SPEC 4-5)."""

from ismcgm import extract, mc
from ismcgm.io import read_cube, read_table
from ismcgm.maskio import masks_on_cube, read_masks
from ismcgm.mcfit import chunk_columns, write_chunk
from ismcgm.workflow_script import run


def cube_level_draws(par, grating, cube_path, masks, alignment):
    """Literal cube-level draws: perturb every voxel and extract (``mc.level: cube``)."""
    cube = read_cube(cube_path, par.row["id"])
    mask_dict, mask_wcs, _ = masks
    carried, _ = masks_on_cube(mask_dict, mask_wcs, cube.wcs, cube.sci.shape[1:], alignment, grating,
                               [ext for _, _, ext in par.regions])
    return mc.region_cube_draws(cube, carried, par.regions, par.seed, grating, par.realisations)


def main():
    par, inp = snakemake.params, snakemake.input
    n = len(par.regions)
    if par.level == "cube":  # read once for every grating
        masks, alignment = read_masks(inp.masks), read_table(inp.alignment)
    parts = []
    for i, grating in enumerate(par.gratings):
        spectra = []
        for (component, region, _), path in zip(par.regions, inp.spectra[i * n:(i + 1) * n]):
            s = extract.read_spectrum(path)
            spectra.append((component, region, s.wave_um, s.flux, s.err))
        draws = cube_level_draws(par, grating, inp.cubes[i], masks, alignment) if par.level == "cube" else None
        parts.append(chunk_columns(par.row["id"], spectra, par.row["z"], grating, par.realisations, par.seed,
                                   par.fit, draws))
    write_chunk(parts, snakemake.output[0])


run(snakemake, main)
