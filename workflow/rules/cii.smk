"""ALMA [C II]: extraction through the reprojected masks, [C II]/Hα, simulation maps, Fig. 6 (SPEC 11)."""


rule cii_galaxy:
    """[C II] flux of every region of one galaxy (galaxies without an ALMA cube are skipped)."""
    input:
        cube=lambda w: SAMPLES.loc[w.id, "alma_cube"],
        masks=f"{RESULTS}/masks/{{variant}}/{{id}}.fits",
        ha_cube=reference_cube,  # Hα map for matching Hα to the ALMA beam
    output:
        fluxes=f"{RESULTS}/cii/{{variant}}/{{id}}.csv",
        realisations=f"{RESULTS}/cii/{{variant}}/{{id}}_realisations.parquet",
    log:
        f"{RESULTS}/logs/cii/{{variant}}/{{id}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cii/{{variant}}/{{id}}.tsv"
    group:
        "galaxy"
    params:
        row=sample_row,
        seed=config["seed"],
        n_mc=config["cii"]["n_realisations"],
        n_gauss=config["cii"]["n_gauss"],
        detect_snr=config["fit"]["detect_snr"],
    script:
        "../scripts/cii_galaxy.py"


rule cii_table:
    """[C II]/Hα (dust-corrected) per region and the Balmer-decrement difference (SPEC 11)."""
    input:
        cii=lambda w: expand(f"{RESULTS}/cii/{w.variant}/{{id}}.csv", id=ALMA_GALAXIES),
        fluxes=f"{RESULTS}/tables/{{variant}}/line_fluxes.csv",
        ratios=f"{RESULTS}/tables/{{variant}}/ratios.csv",
    output:
        report(
            f"{RESULTS}/tables/{{variant}}/cii.csv",
            caption="../report/cii.rst",
            category="Models",
            subcategory="{variant}",
        ),
    log:
        f"{RESULTS}/logs/cii_table/{{variant}}.log",
    params:
        detect_snr=config["fit"]["detect_snr"],
    script:
        "../scripts/cii_table.py"


rule mock_sims:
    """SYNTHETIC simulation-like [C II] and Hα maps (stand-ins for SERRA; mock only)."""
    output:
        [f"{RESULTS}/mock/sims/synthsim{i:02d}.fits" for i in range(1, 7)],
    log:
        f"{RESULTS}/logs/mock/sims.log",
    params:
        seed=config["mock"]["seed"],
    script:
        "../scripts/mock_sims.py"


rule cii_sim_profiles:
    """[C II]/Hα of the simulation maps within 3 kpc, 3-15 kpc, and radial profiles (SPEC 11)."""
    input:
        sim_maps(),
    output:
        profiles=report(f"{RESULTS}/tables/cii_sim_profiles.csv", caption="../report/cii_sims.rst", category="Models"),
        summary=f"{RESULTS}/tables/cii_sim_summary.csv",
    log:
        f"{RESULTS}/logs/cii_sim_profiles.log",
    script:
        "../scripts/cii_sim_profiles.py"


rule fig6_cii:
    """Figure 6: [C II]/Hα in the ISM and CGM with the simulation values."""
    input:
        cii=f"{RESULTS}/tables/{{variant}}/cii.csv",
        sims=f"{RESULTS}/tables/cii_sim_summary.csv",
        profiles=f"{RESULTS}/tables/cii_sim_profiles.csv",
    output:
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig6_cii.pdf",
            caption="../report/fig6.rst",
            category="Models",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/fig6_cii.png",
    log:
        f"{RESULTS}/logs/fig6/{{variant}}.log",
    params:
        synthetic=MOCK,
    script:
        "../scripts/fig6_cii.py"
