"""Photoionisation models (SPEC 9, Figs. 5 and 7), N/O abundances (SPEC 10) and the
[N II] S/N bias test (SPEC 12)."""

import re

from ismcgm import cloudy as ismcgm_cloudy
from ismcgm.workflow_config import ConfigError as _ModelsConfigError, source_of as _config_source

try:
    CLOUDY_RUNS = ismcgm_cloudy.cloudy_runs(config["cloudy"])
    CLOUDY_MODELS = ismcgm_cloudy.cloudy_models(config["cloudy"])
except ValueError as _exc:
    raise _ModelsConfigError(
        f"{_config_source('cloudy', CONFIG_FILES)}: bad value under cloudy: {_exc} -- fix: correct the cloudy section"
    ) from None

CLOUDY_DIR = f"{RESULTS}/cloudy"
CLOUDY_DECKS = f"{CLOUDY_DIR}/decks"
CLOUDY_EXECUTABLE = config["cloudy"]["executable"]
CLOUDY_LINE_LIST = f"{CLOUDY_DECKS}/{config['cloudy']['line_list_file']}"
CLOUDY_MODEL_NAMES = "|".join(re.escape(n) for n in CLOUDY_RUNS)


#: Every Cloudy input deck and the line-list file they save.
CLOUDY_DECK_FILES = [CLOUDY_LINE_LIST] + [f"{CLOUDY_DECKS}/{name}.in" for name in CLOUDY_RUNS]
#: Main outputs and line lists of the Cloudy runs (none without an executable).
CLOUDY_RUN_OUTS = [f"{CLOUDY_DECKS}/{name}.out" for name in CLOUDY_RUNS] if CLOUDY_EXECUTABLE else []
CLOUDY_RUN_LINES = [f"{CLOUDY_DECKS}/{name}.lines" for name in CLOUDY_RUNS] if CLOUDY_EXECUTABLE else []

#: Every file of this rule file (for ``rule all``).
MODEL_PRODUCTS = (
    CLOUDY_DECK_FILES
    + [f"{CLOUDY_DIR}/grid.csv", f"{CLOUDY_DIR}/delta_ratios.csv"]
    + expand(
        f"{RESULTS}/figures/{{variant}}/{{f}}.{{ext}}",
        variant=VARIANTS,
        f=["fig5_cloudy", "fig7_nitrogen"],
        ext=["pdf", "png"],
    )
    + expand(f"{RESULTS}/tables/{{variant}}/{{t}}.csv", variant=VARIANTS, t=["abundances", "abundances_delta"])
    + [f"{RESULTS}/tables/nii_bias.csv", f"{RESULTS}/figures/nii_bias.pdf", f"{RESULTS}/figures/nii_bias.png"]
)


localrules:
    cloudy_decks,
    cloudy_grid,


rule cloudy_decks:
    """Cloudy input deck of every model (SPEC 9) and the list of lines they save, in one job."""
    output:
        line_list=CLOUDY_LINE_LIST,
        decks=[f"{CLOUDY_DECKS}/{name}.in" for name in CLOUDY_RUNS],
    log:
        f"{RESULTS}/logs/cloudy/decks.log",
    params:
        models=list(CLOUDY_RUNS.values()),
    script:
        "../scripts/cloudy_decks.py"


if CLOUDY_EXECUTABLE:

    rule cloudy_run:
        """Run Cloudy on one deck (only when cloudy.executable is set)."""
        input:
            deck=f"{CLOUDY_DECKS}/{{model}}.in",
            line_list=CLOUDY_LINE_LIST,
        output:
            out=f"{CLOUDY_DECKS}/{{model}}.out",
            lines=f"{CLOUDY_DECKS}/{{model}}.lines",
        log:
            f"{RESULTS}/logs/cloudy/run/{{model}}.log",
        wildcard_constraints:
            model=CLOUDY_MODEL_NAMES,
        params:
            executable=CLOUDY_EXECUTABLE,
            sed_file=config["cloudy"]["sed_file"],
        script:
            "../scripts/cloudy_run.py"


rule cloudy_grid:
    """Line ratios of every model: from the Cloudy runs, or mapped onto a packaged grid (SPEC 9)."""
    input:
        outs=CLOUDY_RUN_OUTS,
        lines=CLOUDY_RUN_LINES,
    output:
        grid=report(f"{CLOUDY_DIR}/grid.csv", caption="../report/cloudy_grid.rst", category="Models"),
        delta=f"{CLOUDY_DIR}/delta_ratios.csv",
    log:
        f"{RESULTS}/logs/cloudy/grid.log",
    params:
        models=CLOUDY_MODELS,
        run_names=list(CLOUDY_RUNS) if CLOUDY_EXECUTABLE else [],
        grid="cloudy" if CLOUDY_EXECUTABLE else config["cloudy"]["grid"],
    script:
        "../scripts/cloudy_grid.py"


rule fig5_cloudy:
    """Figures 5 and 7: model Delta log(ratio) profiles with the observed CGM - ISM boxes."""
    input:
        delta=f"{CLOUDY_DIR}/delta_ratios.csv",
        stats=f"{RESULTS}/tables/{{variant}}/statistics.csv",
        regions=f"{RESULTS}/tables/{{variant}}/regions.csv",
    output:
        fig5_pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig5_cloudy.pdf",
            caption="../report/fig5.rst",
            category="Models",
            subcategory="{variant}",
        ),
        fig5_png=f"{RESULTS}/figures/{{variant}}/fig5_cloudy.png",
        fig7_pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig7_nitrogen.pdf",
            caption="../report/fig7.rst",
            category="Models",
            subcategory="{variant}",
        ),
        fig7_png=f"{RESULTS}/figures/{{variant}}/fig7_nitrogen.png",
    log:
        f"{RESULTS}/logs/fig5/{{variant}}.log",
    params:
        synthetic=MOCK,
    script:
        "../scripts/fig5_cloudy.py"


rule abundances:
    """N/O per component and region and Delta log(N/O) CGM - ISM from the MC realisations (SPEC 10)."""
    input:
        f"{RESULTS}/mc/{{variant}}/realisations.parquet",
    output:
        table=report(
            f"{RESULTS}/tables/{{variant}}/abundances.csv",
            caption="../report/abundances.rst",
            category="Abundances",
            subcategory="{variant}",
        ),
        delta=report(
            f"{RESULTS}/tables/{{variant}}/abundances_delta.csv",
            caption="../report/abundances.rst",
            category="Abundances",
            subcategory="{variant}",
        ),
    log:
        f"{RESULTS}/logs/abundances/{{variant}}.log",
    params:
        detect_snr=config["fit"]["detect_snr"],
    script:
        "../scripts/abundances.py"


rule nii_bias:
    """[N II] S/N bias test: simulated [N II] + Ha blends refitted with the fast fitter (SPEC 12)."""
    output:
        table=report(f"{RESULTS}/tables/nii_bias.csv", caption="../report/nii_bias.rst", category="Abundances"),
        pdf=report(f"{RESULTS}/figures/nii_bias.pdf", caption="../report/nii_bias.rst", category="Abundances"),
        png=f"{RESULTS}/figures/nii_bias.png",
    log:
        f"{RESULTS}/logs/nii_bias.log",
    params:
        cfg=config["nii_bias"],
        seed=config["seed"],
    script:
        "../scripts/nii_bias.py"
