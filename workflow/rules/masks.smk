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
    benchmark:
        f"{RESULTS}/benchmarks/align/{{id}}.tsv"
    group:
        "galaxy"
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


# One job per galaxy and mask variant makes the masks and reads each cube once to
# write the spectrum of every region in every grating and the transfer matrix of
# the intrinsic decomposition (issue 19): job start-up and imports cost more than
# the work.  A rule's outputs cannot vary by galaxy, so there is
# one rule per kind of galaxy (single: ISM, CGM; merger: both per component) and
# set of gratings, e.g. extract_merger_g235m_g395h.
for _kind, _gratings in extract_sets():

    rule:
        """ISM and CGM masks of one galaxy for one mask variant (SPEC 2-3, 3.4), the spectrum of every
        region in every grating (SPEC 4) and the halo fit and transfer matrix of the galaxy's ISM and halo
        terms (ismcgm.decompose), also over the posterior of the halo's scale length."""
        name:
            f"extract_{_kind}_{'_'.join(_gratings)}"
        input:
            image=image_path,
            cubes=lambda w: [SAMPLES.loc[w.id, f"cube_{g}"] for g in gratings_of(w.id)],
            alignment=f"{RESULTS}/alignment/{{id}}.csv",
            exclude=exclude_region,
            alma=alma_for_masks,
        output:
            masks=f"{RESULTS}/masks/{{variant}}/{{id}}.fits",
            regions=f"{RESULTS}/masks/{{variant}}/{{id}}_regions.csv",
            spectra=[
                f"{RESULTS}/spectra/{{variant}}/{c}_{r}_{g}.fits"
                for g in _gratings
                for c, r, _ in ismcgm_regions.galaxy_regions("{id}", _kind == "merger")
            ],
            transfer=f"{RESULTS}/intrinsic/{{variant}}/{{id}}_transfer.csv",
            transfer_h=f"{RESULTS}/intrinsic/{{variant}}/{{id}}_transfer_h.csv",
        log:
            f"{RESULTS}/logs/extract/{{variant}}/{{id}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/extract/{{variant}}/{{id}}.tsv"
        wildcard_constraints:
            id="|".join(galaxies_with(_kind, _gratings)),
        group:
            "galaxy"
        params:
            row=sample_row,
            mask=mask_params,
            regions=lambda w: region_names(w.id),
            gratings=lambda w: gratings_of(w.id),
            halo_fit=config["intrinsic"]["halo_fit"],
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
