"""ISM vs CGM emission-line ratios of z = 4-6 galaxies (JWST NIRSpec IFU, NIRCam, ALMA).

Run:  snakemake --cores all          (the default analysis, on the SYNTHETIC mock survey)
      snakemake --report report.html (provenance report after a run)
"""

import os

from ismcgm.workflow_config import read_yaml_config

read_yaml_config(os.path.join(workflow.basedir, "config.yaml"))  # a YAML error names the file


configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/mock.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/cii.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/resolved.smk"
include: "workflow/rules/intrinsic.smk"


rule all:
    """Everything the default analysis produces."""
    default_target: True
    input:
        mock_products() if MOCK else [],
        f"{RESULTS}/tables/alignment.csv",
        expand(f"{RESULTS}/tables/{{variant}}/regions.csv", variant=VARIANTS),
        expand(f"{RESULTS}/figures/{{variant}}/fig1_masks.pdf", variant=VARIANTS),
        [all_spectra(v) for v in VARIANTS],
        expand(
            f"{RESULTS}/tables/{{variant}}/{{t}}.csv",
            variant=VARIANTS,
            t=["line_fluxes", "grating_overlap", "ratios", "statistics", "mass_trend", "cii"],
        ),
        f"{RESULTS}/tables/cii_sim_profiles.csv",
        expand(
            f"{RESULTS}/figures/{{variant}}/{{f}}.pdf",
            variant=VARIANTS,
            f=["fig2_spectra", "fig3_ratios", "fig4_d11", "fig6_cii"],
        ),
        expand(f"{RESULTS}/validation/{{variant}}/summary.json", variant=VARIANTS) if MOCK else [],
        MODEL_PRODUCTS,
        resolved_products(),
        expand(f"{RESULTS}/tables/{{variant}}/intrinsic_statistics.csv", variant=VARIANTS),
