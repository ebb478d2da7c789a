"""Validation against the SYNTHETIC mock truth: shift recovery and flux pulls."""

import json

import pandas as pd

from ismcgm import cii, ratios, stats, validation
from ismcgm.io import atomic_path, read_table, write_table
from ismcgm.plots.validation import plot_recovery
from ismcgm.workflow_script import run


def main():
    inp, par = snakemake.input, snakemake.params
    truth = json.loads(open(inp.truth_json).read())
    true_df = validation.survey_true_fluxes(par.galaxies, par.rows, inp.truth, inp.masks, inp.alignment, inp.cubes,
                                            par.gratings, par.regions, dict(zip(par.alma_galaxies, inp.alma)))
    fluxes = pd.concat([read_table(inp.fluxes)] + [read_table(p) for p in inp.cii], ignore_index=True)

    samples = pd.DataFrame(par.samples)
    # ratios as the pipeline forms them ([C II] at the IFU resolution: cii.native_resolution)
    true_ratios = validation.true_ratios(true_df, fluxes, samples, par.intrinsic_ha_hb)
    measured_ratios = ratios.compute_ratios(ratios.preferred_grating(cii.native_resolution(fluxes)), samples)
    # the same components as the measured statistic: the measured limits decide
    keys = ["component", "region", "ratio"]
    true_ratios = true_ratios.drop(columns="limit").merge(measured_ratios[keys + ["limit"]], on=keys)
    true_stats = stats.statistics_table(true_ratios, par.seed, par.n_mc)
    measured = read_table(inp.stats)
    recovery = validation.recovery_table(measured, true_stats, validation.injected_shifts(truth, ratios.RATIOS),
                                         read_table(inp.intrinsic), read_table(inp.stacked))
    pull_rows, pulls = validation.flux_pulls(fluxes, true_df[validation.TRUE_COLUMNS], par.detect_snr)
    write_table(recovery, snakemake.output.recovery, comment="validation against the SYNTHETIC mock truth")
    write_table(pulls, snakemake.output.pulls, comment="pull = (flux - true flux through the mask) / flux_err, over the lines with true flux / flux_err "
                                                 ">= detect_snr (n, median_pull, std_pull) and over the detected lines "
                                                 "(n_detected, median_pull_detected)")
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(json.dumps(validation.summary_checks(recovery, validation.family_pulls(pull_rows)), indent=1))
    plot_recovery(recovery, snakemake.output.pdf, snakemake.output.png, synthetic=True)


run(snakemake, main)
