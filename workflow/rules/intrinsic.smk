"""Intrinsic component ratios: region fluxes split into an ISM term and a halo term (issue 19, ismcgm.decompose)."""


localrules:
    intrinsic_statistics,


# The per-galaxy transfer matrices (results/intrinsic/<variant>/<id>_transfer.csv) are written by the
# galaxy's extract job (masks.smk), which has its image and cubes in memory.


rule intrinsic_ratios:
    """Term fluxes per realisation (T^-1 times the region fluxes, T at the realisation's draw of the halo's
    scale length), their dust correction and ratios; the sample-level stacked shifts of the terms
    (ismcgm.stacking)."""
    input:
        realisations=f"{RESULTS}/mc/{{variant}}/realisations.parquet",
        transfers=lambda w: expand(f"{RESULTS}/intrinsic/{w.variant}/{{id}}_transfer.csv", id=GALAXIES),
        posteriors=lambda w: expand(f"{RESULTS}/intrinsic/{w.variant}/{{id}}_transfer_h.csv", id=GALAXIES),
        cii=lambda w: expand(f"{RESULTS}/cii/{w.variant}/{{id}}.csv", id=ALMA_GALAXIES),
        cii_realisations=lambda w: expand(f"{RESULTS}/cii/{w.variant}/{{id}}_realisations.parquet", id=ALMA_GALAXIES),
    output:
        ratios=f"{RESULTS}/tables/{{variant}}/intrinsic_ratios.csv",
        fluxes=f"{RESULTS}/tables/{{variant}}/intrinsic_line_fluxes.csv",
        transfer=f"{RESULTS}/tables/{{variant}}/intrinsic_transfer.csv",
        stacked=f"{RESULTS}/tables/{{variant}}/intrinsic_stacked.csv",
    log:
        f"{RESULTS}/logs/intrinsic_ratios/{{variant}}.log",
    params:
        samples=lambda w: SAMPLES[["id", "logmstar", "merger"]].to_dict(orient="records"),
        detect_snr=config["fit"]["detect_snr"],
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        overlap=config["ratios"]["overlap"],
        seed=config["seed"],
    script:
        "../scripts/intrinsic_ratios.py"


rule intrinsic_statistics:
    """The SPEC 8 statistics of the intrinsic component ratios (columns of statistics.csv)."""
    input:
        f"{RESULTS}/tables/{{variant}}/intrinsic_ratios.csv",
    output:
        f"{RESULTS}/tables/{{variant}}/intrinsic_statistics.csv",
    log:
        f"{RESULTS}/logs/intrinsic_statistics/{{variant}}.log",
    params:
        seed=config["seed"],
        n_mc=config["stats"]["n_mc"],
    script:
        "../scripts/intrinsic_statistics.py"
