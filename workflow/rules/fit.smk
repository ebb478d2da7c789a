"""Monte Carlo realisations, tied-kinematics line fits and dust correction (SPEC 4-6, Fig. 2)."""

from ismcgm.mcfit import chunk_realisations


wildcard_constraints:
    chunk=r"\d+",


rule mc_fit:
    """Draw and fit one chunk of Monte Carlo realisations of every region of a galaxy in every grating."""
    input:
        unpack(mc_inputs),
    output:
        f"{RESULTS}/mc/{{variant}}/chunks/{{id}}_{{chunk}}.parquet",
    log:
        f"{RESULTS}/logs/mc/{{variant}}/{{id}}_{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mc/{{variant}}/{{id}}_{{chunk}}.tsv"
    group:
        "galaxy"
    params:
        row=sample_row,
        regions=lambda w: region_names(w.id),
        gratings=lambda w: gratings_of(w.id),
        realisations=lambda w: chunk_realisations(int(w.chunk), N_MC, CHUNK),
        seed=config["seed"],
        fit=config["fit"],
        level=config["mc"]["level"],
        lines=config["lines"],  # the line list (applied by ismcgm.workflow_script.run): edits rerun the fits
    script:
        "../scripts/mc_fit.py"


rule mc_gather:
    """Line fluxes, dust correction and the grating overlap from all realisations."""
    input:
        all_chunks,
    output:
        fluxes=report(
            f"{RESULTS}/tables/{{variant}}/line_fluxes.csv",
            caption="../report/line_fluxes.rst",
            category="Spectra",
            subcategory="{variant}",
        ),
        realisations=f"{RESULTS}/mc/{{variant}}/realisations.parquet",
        overlap=report(
            f"{RESULTS}/tables/{{variant}}/grating_overlap.csv",
            caption="../report/overlap.rst",
            category="Spectra",
            subcategory="{variant}",
        ),
    log:
        f"{RESULTS}/logs/mc_gather/{{variant}}.log",
    params:
        detect_snr=config["fit"]["detect_snr"],
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        overlap=config["ratios"]["overlap"],
        f_stellar_nebular=config["dust"]["f_stellar_nebular"],
    script:
        "../scripts/mc_gather.py"


rule fig2_spectra:
    """Figure 2: an example galaxy's ISM and CGM spectra with the best fit."""
    input:
        spectra=lambda w: [s for g in gratings_of(GALAXIES[0]) for s in spectra_of(w.variant, GALAXIES[0], g)],
    output:
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig2_spectra.pdf",
            caption="../report/fig2.rst",
            category="Spectra",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/fig2_spectra.png",
    log:
        f"{RESULTS}/logs/fig2/{{variant}}.log",
    params:
        row=lambda w: row_dict(GALAXIES[0]),
        fit=config["fit"],
        synthetic=MOCK,
    script:
        "../scripts/fig2_spectra.py"
