"""Spatially resolved line ratios: radial profiles from the ISM into the CGM (issue 18), Fig. 8."""

RESOLVED = config["resolved"]


localrules:
    radial_profiles,
    profile_validation,


def resolved_galaxy_files(variant, kind):
    ext = {"profile": "csv", "fluxes": "csv", "geometry": "csv", "annuli": "fits"}[kind]
    suffix = {"profile": "", "fluxes": "_fluxes", "geometry": "_annuli", "annuli": ""}[kind]
    folder = "annuli" if kind == "annuli" else "profiles"
    return [f"{RESULTS}/resolved/{variant}/{folder}/{gid}{suffix}.{ext}" for gid in GALAXIES]


def resolved_products():
    """Everything the resolved analysis adds to ``rule all``."""
    if not RESOLVED["enabled"]:
        return []
    out = []
    for v in VARIANTS:
        out += [f"{RESULTS}/tables/{v}/radial_profiles.csv", f"{RESULTS}/tables/{v}/radial_profile_median.csv",
                f"{RESULTS}/figures/{v}/fig8_profiles.pdf"]
        if MOCK:
            out.append(f"{RESULTS}/validation/{v}/profile_summary.json")
    return out


rule resolved_galaxy:
    """Annuli about each component, stacked, fitted with the keyed Monte Carlo, ratios per realisation."""
    input:
        cubes=lambda w: [SAMPLES.loc[w.id, f"cube_{g}"] for g in gratings_of(w.id)],
        masks=f"{RESULTS}/masks/{{variant}}/{{id}}.fits",
        alignment=f"{RESULTS}/alignment/{{id}}.csv",
    output:
        annuli=f"{RESULTS}/resolved/{{variant}}/annuli/{{id}}.fits",
        profile=f"{RESULTS}/resolved/{{variant}}/profiles/{{id}}.csv",
        fluxes=f"{RESULTS}/resolved/{{variant}}/profiles/{{id}}_fluxes.csv",
        geometry=f"{RESULTS}/resolved/{{variant}}/profiles/{{id}}_annuli.csv",
    params:
        row=sample_row,
        gratings=lambda w: gratings_of(w.id),
        mask_params=mask_params,
        edges=RESOLVED["radial_edges_kpc"],
        seed=config["seed"],
        n_mc=config["mc"]["n_realisations"],
        fit=config["fit"],
        detect_snr=config["fit"]["detect_snr"],
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        overlap=config["ratios"]["overlap"],
    log:
        f"{RESULTS}/logs/resolved/{{variant}}/{{id}}.log",
    script:
        "../scripts/resolved_galaxy.py"


rule radial_profiles:
    """The sample's radial-profile table and its median profile with bootstrap errors."""
    input:
        profiles=lambda w: resolved_galaxy_files(w.variant, "profile"),
        geometry=lambda w: resolved_galaxy_files(w.variant, "geometry"),
    output:
        table=report(f"{RESULTS}/tables/{{variant}}/radial_profiles.csv", caption="../report/radial_profiles.rst",
                     category="Radial profiles", subcategory="{variant}"),
        median=f"{RESULTS}/tables/{{variant}}/radial_profile_median.csv",
        annuli=f"{RESULTS}/tables/{{variant}}/radial_annuli.csv",
    params:
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/radial_profiles/{{variant}}.log",
    script:
        "../scripts/resolved_profiles.py"


rule profile_validation:
    """Radial profiles against the SYNTHETIC mock truth (profile pulls, CGM consistency)."""
    input:
        profiles=lambda w: resolved_galaxy_files(w.variant, "profile"),
        fluxes=lambda w: resolved_galaxy_files(w.variant, "fluxes"),
        geometry=lambda w: resolved_galaxy_files(w.variant, "geometry"),
        annuli=lambda w: resolved_galaxy_files(w.variant, "annuli"),
        median=f"{RESULTS}/tables/{{variant}}/radial_profile_median.csv",
        ratios=f"{RESULTS}/tables/{{variant}}/ratios.csv",
        truth=expand(f"{RESULTS}/mock/{{id}}/{{id}}_truth.fits", id=GALAXIES),
        alignment=expand(f"{RESULTS}/alignment/{{id}}.csv", id=GALAXIES),
        cubes=[SAMPLES.loc[g, f"cube_{gr}"] for g in GALAXIES for gr in gratings_of(g)],
    output:
        pulls=report(f"{RESULTS}/validation/{{variant}}/profile_pulls.csv", caption="../report/profile_pulls.rst",
                     category="Validation", subcategory="{variant}"),
        summary=f"{RESULTS}/validation/{{variant}}/profile_pulls_summary.csv",
        consistency=f"{RESULTS}/validation/{{variant}}/profile_cgm_consistency.csv",
        median_check=f"{RESULTS}/validation/{{variant}}/profile_median_check.csv",
        json=f"{RESULTS}/validation/{{variant}}/profile_summary.json",
    params:
        galaxies=GALAXIES,
        rows={g: row_dict(g) for g in GALAXIES},
        gratings={g: gratings_of(g) for g in GALAXIES},
        intrinsic_ha_hb=config["dust"]["intrinsic_ha_hb"],
        consistency_nsigma=RESOLVED["consistency_nsigma"],
    log:
        f"{RESULTS}/logs/profile_validation/{{variant}}.log",
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
        pdf=report(f"{RESULTS}/figures/{{variant}}/fig8_profiles.pdf", caption="../report/fig8.rst",
                   category="Radial profiles", subcategory="{variant}"),
        png=f"{RESULTS}/figures/{{variant}}/fig8_profiles.png",
    params:
        synthetic=MOCK,
    log:
        f"{RESULTS}/logs/fig8/{{variant}}.log",
    script:
        "../scripts/fig8_profiles.py"
