"""Alignment, ISM/CGM masks and region spectra (SPEC sections 1-4, Fig. 1)."""


localrules:
    alignment_table,
    regions_table,


rule align:
    """Shift that brings the IFU WCS onto the PSF-matched continuum image (SPEC 1)."""
    input:
        cubes=lambda w: [SAMPLES.loc[w.id, f"cube_{g}"] for g in gratings_of(w.id)],
        image=image_path,
    output:
        f"{RESULTS}/alignment/{{id}}.csv",
    log:
        f"{RESULTS}/logs/align/{{id}}.log",
    params:
        row=sample_row,
        gratings=lambda w: gratings_of(w.id),
        max_shift_arcsec=config["alignment"]["max_shift_arcsec"],
    script:
        "../scripts/align.py"


rule alignment_table:
    input:
        expand(f"{RESULTS}/alignment/{{id}}.csv", id=GALAXIES),
    output:
        report(f"{RESULTS}/tables/alignment.csv", caption="../report/alignment.rst", category="Masks"),
    log:
        f"{RESULTS}/logs/alignment_table.log",
    script:
        "../scripts/concat_tables.py"


rule masks:
    """ISM and CGM masks of one galaxy for one mask variant (SPEC 2-3)."""
    input:
        image=image_path,
        cube=reference_cube,
        alignment=f"{RESULTS}/alignment/{{id}}.csv",
        exclude=exclude_region,
        alma=alma_for_masks,
    output:
        masks=f"{RESULTS}/masks/{{variant}}/{{id}}.fits",
        regions=f"{RESULTS}/masks/{{variant}}/{{id}}_regions.csv",
    log:
        f"{RESULTS}/logs/masks/{{variant}}/{{id}}.log",
    params:
        row=sample_row,
        mask=mask_params,
        components=lambda w: region_names(w.id),
    script:
        "../scripts/make_masks.py"


rule regions_table:
    input:
        lambda w: expand(f"{RESULTS}/masks/{w.variant}/{{id}}_regions.csv", id=GALAXIES),
    output:
        report(
            f"{RESULTS}/tables/{{variant}}/regions.csv",
            caption="../report/regions.rst",
            category="Masks",
            subcategory="{variant}",
        ),
    log:
        f"{RESULTS}/logs/regions_table/{{variant}}.log",
    script:
        "../scripts/concat_tables.py"


# One job per galaxy and grating reads the cube once and writes the spectrum of
# every region; mergers have four regions, other galaxies two.
EXTRACT = dict(
    input=dict(
        cube=cube_path,
        masks=f"{RESULTS}/masks/{{variant}}/{{id}}.fits",
        alignment=f"{RESULTS}/alignment/{{id}}.csv",
    ),
    params=dict(row=sample_row, regions=lambda w: region_names(w.id)),
)


rule extract_single:
    """ISM and CGM spectra of a single galaxy in one grating (SPEC 4)."""
    input:
        **EXTRACT["input"],
    output:
        ism=f"{RESULTS}/spectra/{{variant}}/{{id}}_ISM_{{grating}}.fits",
        cgm=f"{RESULTS}/spectra/{{variant}}/{{id}}_CGM_{{grating}}.fits",
    log:
        f"{RESULTS}/logs/extract/{{variant}}/{{id}}_{{grating}}.log",
    wildcard_constraints:
        id="|".join(SINGLES) or "NONE",
    params:
        **EXTRACT["params"],
    script:
        "../scripts/extract.py"


rule extract_merger:
    """ISM and CGM spectra of both components of a merger in one grating (SPEC 3.4, 4)."""
    input:
        **EXTRACT["input"],
    output:
        ism_a=f"{RESULTS}/spectra/{{variant}}/{{id}}_a_ISM_{{grating}}.fits",
        cgm_a=f"{RESULTS}/spectra/{{variant}}/{{id}}_a_CGM_{{grating}}.fits",
        ism_b=f"{RESULTS}/spectra/{{variant}}/{{id}}_b_ISM_{{grating}}.fits",
        cgm_b=f"{RESULTS}/spectra/{{variant}}/{{id}}_b_CGM_{{grating}}.fits",
    log:
        f"{RESULTS}/logs/extract/{{variant}}/{{id}}_{{grating}}.log",
    wildcard_constraints:
        id="|".join(MERGERS) or "NONE",
    params:
        **EXTRACT["params"],
    script:
        "../scripts/extract.py"


rule fig1_masks:
    """Figure 1: masks over continuum-subtracted Hα maps."""
    input:
        masks=lambda w: expand(f"{RESULTS}/masks/{w.variant}/{{id}}.fits", id=GALAXIES),
        cubes=[reference_cube_of(g) for g in GALAXIES],
        alignment=expand(f"{RESULTS}/alignment/{{id}}.csv", id=GALAXIES),
    output:
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig1_masks.pdf",
            caption="../report/fig1.rst",
            category="Masks",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/fig1_masks.png",
    log:
        f"{RESULTS}/logs/fig1/{{variant}}.log",
    params:
        rows=[row_dict(g) for g in GALAXIES],
        synthetic=MOCK,
    script:
        "../scripts/fig1_masks.py"
