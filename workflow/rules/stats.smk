"""Line ratios, statistics, validation against the mock truth, Figs. 3-4 (SPEC 7-8, 13)."""


localrules:
    ratios,
    statistics,


rule ratios:
    """Dust-corrected line ratios of every component and region, formed realisation by realisation (SPEC 7)."""
    input:
        fluxes=f"{RESULTS}/tables/{{variant}}/line_fluxes.csv",
        realisations=f"{RESULTS}/mc/{{variant}}/realisations.parquet",
        cii=lambda w: expand(f"{RESULTS}/cii/{w.variant}/{{id}}.csv", id=ALMA_GALAXIES),
        cii_realisations=lambda w: expand(f"{RESULTS}/cii/{w.variant}/{{id}}_realisations.parquet", id=ALMA_GALAXIES),
    output:
        report(
            f"{RESULTS}/tables/{{variant}}/ratios.csv",
            caption="../report/ratios.rst",
            category="Ratios",
            subcategory="{variant}",
        ),
    log:
        f"{RESULTS}/logs/ratios/{{variant}}.log",
    params:
        samples=lambda w: SAMPLES[["id", "logmstar", "merger"]].to_dict(orient="records"),
    script:
        "../scripts/ratios.py"


rule statistics:
    """Kendall tau_b, d11 KS test, shifts and the mass trend per ratio (SPEC 8)."""
    input:
        f"{RESULTS}/tables/{{variant}}/ratios.csv",
    output:
        stats=report(
            f"{RESULTS}/tables/{{variant}}/statistics.csv",
            caption="../report/statistics.rst",
            category="Statistics",
            subcategory="{variant}",
        ),
        mass=report(
            f"{RESULTS}/tables/{{variant}}/mass_trend.csv",
            caption="../report/mass_trend.rst",
            category="Statistics",
            subcategory="{variant}",
        ),
        d11=f"{RESULTS}/tables/{{variant}}/d11_draws.csv",
        headline=f"{RESULTS}/tables/{{variant}}/headline.csv",
    log:
        f"{RESULTS}/logs/statistics/{{variant}}.log",
    params:
        seed=config["seed"],
        n_mc=config["stats"]["n_mc"],
        mass_bins=config["stats"]["mass_bins"],
    script:
        "../scripts/statistics.py"


rule fig3_ratios:
    """Figure 3: ISM vs CGM line ratios."""
    input:
        ratios=f"{RESULTS}/tables/{{variant}}/ratios.csv",
        stats=f"{RESULTS}/tables/{{variant}}/statistics.csv",
    output:
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig3_ratios.pdf",
            caption="../report/fig3.rst",
            category="Ratios",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/fig3_ratios.png",
    log:
        f"{RESULTS}/logs/fig3/{{variant}}.log",
    params:
        synthetic=MOCK,
        mass_bins=config["stats"]["mass_bins"],
    script:
        "../scripts/fig3_ratios.py"


rule fig4_d11:
    """Figure 4: d11 distributions of data, MC and null with the KS tests."""
    input:
        ratios=f"{RESULTS}/tables/{{variant}}/ratios.csv",
        stats=f"{RESULTS}/tables/{{variant}}/statistics.csv",
        d11=f"{RESULTS}/tables/{{variant}}/d11_draws.csv",
    output:
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/fig4_d11.pdf",
            caption="../report/fig4.rst",
            category="Statistics",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/fig4_d11.png",
    log:
        f"{RESULTS}/logs/fig4/{{variant}}.log",
    params:
        synthetic=MOCK,
    script:
        "../scripts/fig4_d11.py"


rule validation:
    """Recovery of the injected shifts and fluxes on the SYNTHETIC mock (not in the paper)."""
    input:
        fluxes=f"{RESULTS}/tables/{{variant}}/line_fluxes.csv",
        stats=f"{RESULTS}/tables/{{variant}}/statistics.csv",
        intrinsic=f"{RESULTS}/tables/{{variant}}/intrinsic_statistics.csv",
        stacked=f"{RESULTS}/tables/{{variant}}/intrinsic_stacked.csv",
        truth_json=f"{RESULTS}/mock/truth.json",
        truth=expand(f"{RESULTS}/mock/{{id}}/{{id}}_truth.fits", id=GALAXIES),
        masks=lambda w: expand(f"{RESULTS}/masks/{w.variant}/{{id}}.fits", id=GALAXIES),
        alignment=expand(f"{RESULTS}/alignment/{{id}}.csv", id=GALAXIES),
        cubes=[SAMPLES.loc[g, f"cube_{gr}"] for g in GALAXIES for gr in gratings_of(g)],
        cii=lambda w: expand(f"{RESULTS}/cii/{w.variant}/{{id}}.csv", id=ALMA_GALAXIES),
        alma=[SAMPLES.loc[g, "alma_cube"] for g in ALMA_GALAXIES],
    output:
        recovery=report(
            f"{RESULTS}/validation/{{variant}}/recovery.csv",
            caption="../report/recovery.rst",
            category="Validation",
            subcategory="{variant}",
        ),
        pulls=report(
            f"{RESULTS}/validation/{{variant}}/flux_pulls.csv",
            caption="../report/flux_pulls.rst",
            category="Validation",
            subcategory="{variant}",
        ),
        summary=f"{RESULTS}/validation/{{variant}}/summary.json",
        pdf=report(
            f"{RESULTS}/figures/{{variant}}/validation_shifts.pdf",
            caption="../report/validation.rst",
            category="Validation",
            subcategory="{variant}",
        ),
        png=f"{RESULTS}/figures/{{variant}}/validation_shifts.png",
    log:
        f"{RESULTS}/logs/validation/{{variant}}.log",
    params:
        galaxies=GALAXIES,
        alma_galaxies=ALMA_GALAXIES,
        rows={g: row_dict(g) for g in GALAXIES},
        regions={g: region_names(g) for g in GALAXIES},
        gratings={g: gratings_of(g) for g in GALAXIES},
        samples=lambda w: SAMPLES[["id", "logmstar", "merger"]].to_dict(orient="records"),
        seed=config["seed"],
        n_mc=config["stats"]["n_mc"],
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        detect_snr=config["fit"]["detect_snr"],
    script:
        "../scripts/validation.py"
