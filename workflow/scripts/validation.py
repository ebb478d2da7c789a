"""Validation against the SYNTHETIC mock truth: shift recovery and flux pulls."""

import json

import pandas as pd
from astropy.io import fits

from ismcgm import ratios, stats, validation
from ismcgm.io import atomic_path, read_table, write_table
from ismcgm.plots.validation import plot_recovery
from ismcgm.workflow_script import run


def main():
    inp, par = snakemake.input, snakemake.params
    fluxes = read_table(inp.fluxes)
    truth = json.loads(open(inp.truth_json).read())
    cubes = iter(inp.cubes)
    true_parts = []
    for gid, truth_path, mask_path, align_path in zip(par.galaxies, inp.truth, inp.masks, inp.alignment):
        headers, shapes = {}, {}
        for g in par.gratings[gid]:
            hdr = fits.getheader(next(cubes), "SCI")
            headers[g], shapes[g] = hdr, (hdr["NAXIS2"], hdr["NAXIS1"])
        wcs = validation.aligned_cube_wcs(headers, read_table(align_path))
        part = validation.true_line_fluxes(truth_path, mask_path, wcs, shapes, par.regions[gid])
        true_parts.append(part)
    truth_of = dict(zip(par.galaxies, inp.truth))
    masks_of = dict(zip(par.galaxies, inp.masks))
    for gid, alma_path in zip(par.alma_galaxies, inp.alma):
        true_parts.append(validation.true_cii_fluxes(truth_of[gid], masks_of[gid], alma_path, par.redshifts[gid],
                                                     par.regions[gid], gid))
    true_df = pd.concat(true_parts, ignore_index=True)
    fluxes = pd.concat([fluxes] + [read_table(p) for p in inp.cii], ignore_index=True)

    samples = pd.DataFrame(par.samples)
    true_fluxes = validation.true_fluxes_as_measured(true_df, fluxes, par.intrinsic_ha_hb)
    true_ratios = ratios.compute_ratios(ratios.preferred_grating(true_fluxes), samples)
    measured_ratios = ratios.compute_ratios(ratios.preferred_grating(fluxes), samples)
    # the same components as the measured statistic: the measured limits decide
    keys = ["component", "region", "ratio"]
    true_ratios = true_ratios.drop(columns="limit").merge(measured_ratios[keys + ["limit"]], on=keys)
    true_stats = stats.statistics_table(true_ratios, par.seed, par.n_mc)
    measured = read_table(inp.stats)
    recovery = validation.recovery_table(measured, true_stats, validation.injected_shifts(truth, ratios.RATIOS))
    pull_rows, pulls = validation.flux_pulls(fluxes, true_df)
    write_table(recovery, snakemake.output.recovery, comment="validation against the SYNTHETIC mock truth")
    write_table(pulls, snakemake.output.pulls, comment="pull = (flux - true flux through the mask) / flux_err")
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(json.dumps(validation.summary_checks(recovery, validation.family_pulls(pull_rows)), indent=1))
    plot_recovery(recovery, snakemake.output.pdf, snakemake.output.png, synthetic=True)


run(snakemake, main)
