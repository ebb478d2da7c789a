"""Model line ratios (real Cloudy runs or a packaged grid) and Delta log(ratio) vs r = 1 kpc (SPEC 9)."""

import logging

from ismcgm import cloudy
from ismcgm.io import write_table
from ismcgm.workflow_script import run


def main():
    par = snakemake.params
    if par.run_names:
        grid = cloudy.model_grid(par.models, line_lists=dict(zip(par.run_names, snakemake.input.lines)),
                                 main_outputs=dict(zip(par.run_names, snakemake.input.outs)))
    else:
        grid = cloudy.model_grid(par.models, grid=par.grid)
    logging.info("grid source: %s; %d of %d models outside the grid (missing)", par.grid,
                 int(grid["missing"].sum()), len(grid))
    write_table(cloudy.grid_table(grid), snakemake.output.grid)
    write_table(cloudy.delta_ratios(grid), snakemake.output.delta)


run(snakemake, main)
