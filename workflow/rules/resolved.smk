"""Spatially resolved line ratios: radial profiles from the ISM into the CGM (issue 18), Fig. 8."""


localrules:
    radial_profiles,
    profile_validation,


rule resolved_galaxy:
    """One galaxy: annuli about each component and (voronoi.enabled) Voronoi bins, each stacked and fitted
    with the keyed Monte Carlo, and the annuli's [C II] on the ALMA grid (beam spill undone); the maps (MAPS
    FITS, bin table) are finished here, their panels in fig_maps, the profiles in radial_profiles.  One job per
    galaxy: the startup of a job costs as much as its fits."""
    input:
        cubes=lambda w: [SAMPLES.loc[w.id, f"cube_{g}"] for g in gratings_of(w.id)],
        masks=f"{RESULTS}/masks/{{variant}}/{{id}}.fits",
        alignment=f"{RESULTS}/alignment/{{id}}.csv",
        alma=alma_cube_of,  # [] without one: no [C II] profile
    output:
        **_MAPS_OUTPUT,
        annuli=f"{RESULTS}/resolved/{{variant}}/annuli/{{id}}.fits",
        geometry=f"{RESULTS}/resolved/{{variant}}/annuli/{{id}}.csv",
        chunks=f"{RESULTS}/resolved/{{variant}}/chunks/{{id}}.parquet",
        cii=f"{RESULTS}/resolved/{{variant}}/cii/{{id}}.csv",
        cii_realisations=f"{RESULTS}/resolved/{{variant}}/cii/{{id}}_realisations.parquet",
    log:
        f"{RESULTS}/logs/resolved/{{variant}}/{{id}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/resolved/{{variant}}/{{id}}.tsv"
    group:
        "galaxy"
    params:
        row=sample_row,
        gratings=lambda w: gratings_of(w.id),
        mask_params=mask_params,
        lines=config["lines"],
        edges=RESOLVED["radial_edges_kpc"],
        voronoi=RESOLVED["voronoi"],
        seed=config["seed"],
        n_mc=config["mc"]["n_realisations"],
        fit=config["fit"],
        detect_snr=config["fit"]["detect_snr"],
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        overlap=config["ratios"]["overlap"],
        cii=config["cii"],
    script:
        "../scripts/resolved_galaxy.py"


rule fig_maps:
    """The map panel of every galaxy (Halpha flux, velocity, O32, N2 in the Voronoi bins), in one job: a
    plotting library is imported once, not once per galaxy."""
    input:
        maps=lambda w: [f"{RESULTS}/resolved/{w.variant}/maps/{gid}_maps.fits" for gid in GALAXIES],
        masks=lambda w: [f"{RESULTS}/masks/{w.variant}/{gid}.fits" for gid in GALAXIES],
    output:
        pdf=maps_panels("pdf"),
        png=maps_panels("png"),
    log:
        f"{RESULTS}/logs/fig_maps/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fig_maps/{{variant}}.tsv"
    params:
        galaxies=GALAXIES,
        synthetic=MOCK,
    script:
        "../scripts/fig_maps.py"


rule radial_profiles:
    """Line fluxes, dust correction and ratios per realisation of all annuli; the median profile."""
    input:
        chunks=lambda w: resolved_galaxy_files(w.variant, "chunks"),
        geometry=lambda w: resolved_galaxy_files(w.variant, "geometry"),
        cii=lambda w: resolved_galaxy_files(w.variant, "cii"),
        cii_realisations=lambda w: resolved_galaxy_files(w.variant, "cii_realisations"),
    output:
        table=report(
            f"{RESULTS}/tables/{{variant}}/radial_profiles.csv",
            caption="../report/radial_profiles.rst",
            category="Radial profiles",
            subcategory="{variant}",
        ),
        median=f"{RESULTS}/tables/{{variant}}/radial_profile_median.csv",
        annuli=f"{RESULTS}/tables/{{variant}}/radial_annuli.csv",
        fluxes=f"{RESULTS}/tables/{{variant}}/radial_line_fluxes.csv",
        full=f"{RESULTS}/resolved/{{variant}}/radial_profiles_full.csv",
    log:
        f"{RESULTS}/logs/radial_profiles/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/radial_profiles/{{variant}}.tsv"
    params:
        seed=config["seed"],
        samples=lambda w: SAMPLES[["id", "logmstar", "merger"]].to_dict(orient="records"),
        detect_snr=config["fit"]["detect_snr"],
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        overlap=config["ratios"]["overlap"],
    script:
        "../scripts/resolved_profiles.py"


rule profile_validation:
    """Radial profiles against the SYNTHETIC mock truth (profile pulls, CGM consistency)."""
    input:
        profiles=f"{RESULTS}/resolved/{{variant}}/radial_profiles_full.csv",
        fluxes=f"{RESULTS}/tables/{{variant}}/radial_line_fluxes.csv",
        annuli=f"{RESULTS}/tables/{{variant}}/radial_annuli.csv",
        annuli_masks=lambda w: resolved_galaxy_files(w.variant, "annuli"),
        median=f"{RESULTS}/tables/{{variant}}/radial_profile_median.csv",
        ratios=f"{RESULTS}/tables/{{variant}}/ratios.csv",
        truth=expand(f"{RESULTS}/mock/{{id}}/{{id}}_truth.fits", id=GALAXIES),
        alignment=expand(f"{RESULTS}/alignment/{{id}}.csv", id=GALAXIES),
        cubes=[SAMPLES.loc[g, f"cube_{gr}"] for g in GALAXIES for gr in gratings_of(g)],
        alma=[SAMPLES.loc[g, "alma_cube"] for g in CII_PROFILE_GALAXIES],
    output:
        pulls=report(
            f"{RESULTS}/validation/{{variant}}/profile_pulls.csv",
            caption="../report/profile_pulls.rst",
            category="Validation",
            subcategory="{variant}",
        ),
        summary=f"{RESULTS}/validation/{{variant}}/profile_pulls_summary.csv",
        line_pulls=f"{RESULTS}/validation/{{variant}}/profile_flux_pulls.csv",
        consistency=f"{RESULTS}/validation/{{variant}}/profile_cgm_consistency.csv",
        median_check=f"{RESULTS}/validation/{{variant}}/profile_median_check.csv",
        dust_split=f"{RESULTS}/validation/{{variant}}/profile_dust_split.csv",
        json=f"{RESULTS}/validation/{{variant}}/profile_summary.json",
    log:
        f"{RESULTS}/logs/profile_validation/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/profile_validation/{{variant}}.tsv"
    params:
        galaxies=GALAXIES,
        alma_galaxies=CII_PROFILE_GALAXIES,
        rows={g: row_dict(g) for g in GALAXIES},
        gratings={g: gratings_of(g) for g in GALAXIES},
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        consistency_nsigma=RESOLVED["consistency_nsigma"],
        detect_snr=config["fit"]["detect_snr"],
    script:
        "../scripts/resolved_validation.py"


rule fig8_profiles:
    """Figure 8: line ratios against radius, with the two-region values as boxes."""
    input:
        profiles=f"{RESULTS}/tables/{{variant}}/radial_profiles.csv",
        median=f"{RESULTS}/tables/{{variant}}/radial_profile_median.csv",
        annuli=f"{RESULTS}/tables/{{variant}}/radial_annuli.csv",
        ratios=f"{RESULTS}/tables/{{variant}}/ratios.csv",
    output:
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig8_profiles.pdf",
            caption="../report/fig8.rst",
            category="Radial profiles",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/fig8_profiles.png",
    log:
        f"{RESULTS}/logs/fig8/{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fig8/{{variant}}.tsv"
    params:
        synthetic=MOCK,
    script:
        "../scripts/fig8_profiles.py"
