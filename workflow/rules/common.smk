"""Everything Python of the workflow: config and sample-table validation, the
sample table, wildcard constraints and input functions."""

import os

import pandas as pd
from snakemake.utils import min_version

from ismcgm import instrument, instruments
from ismcgm import samples as sio
from ismcgm import mock as smock
from ismcgm.mcfit import n_chunks
from ismcgm import regions as ismcgm_regions
from ismcgm.workflow_config import ConfigError, check_config, check_samples

min_version("9.0")


# ---------------------------------------------------------------- config
# every config error names the file that sets the key: the workflow's config.yaml or a --configfile
CONFIG_FILES = [os.path.join(workflow.basedir, "config.yaml"), *map(str, workflow.overwrite_configfiles or ())]
check_config(config, workflow.source_path("../schemas/config.schema.yaml"), CONFIG_FILES)

instrument.use_lines(config["lines"])  # the config's line list (each job applies it too: workflow_script.run)
MOCK = config["samples"] == "mock"
RESULTS = "results"
VARIANTS = config["variants"]

# ---------------------------------------------------------------- samples
# The galaxy list is known at parse time: for the mock it is computed from the
# config (no data generated), for real data it is the sample table.
if MOCK:
    # unrealised: the paper geometry's sizes need astropy.cosmology, the mock jobs apply them (realise_plan)
    PLANS = {p["id"]: p for p in smock.plan_survey(config["mock"], realise=False)}
    MOCK_ROWS = smock.sample_rows(PLANS.values(), f"{RESULTS}/mock")  # the survey's own cube columns only
    SAMPLES = sio.check_sample_table(pd.DataFrame(MOCK_ROWS))
else:
    PLANS, MOCK_ROWS = {}, []
    SAMPLES = check_samples(
        config["samples"], workflow.source_path("../schemas/samples.schema.yaml"), cubes=config["cubes"]
    )

GALAXIES = list(SAMPLES.index)


wildcard_constraints:
    id="|".join(GALAXIES) if GALAXIES else "NONE",
    grating=instruments.wildcard_pattern(),
    variant="|".join(VARIANTS),


# ---------------------------------------------------------------- helpers
def gratings_of(gid):
    """Setups of galaxy ``gid`` in the registry's wavelength order (G235M, then G395M or G395H)."""
    return sio.galaxy_gratings(SAMPLES.loc[gid])


def _mock_product_set(plan):
    """(gratings, image filter) of a mock galaxy: what its product file names depend on."""
    return tuple(plan["ifu"]["gratings"]), plan["image"]["filter"].lower()


def mock_product_sets():
    """The distinct product sets of the mock survey (one ``mock_galaxy_*`` rule each)."""
    return sorted({_mock_product_set(p) for p in PLANS.values()})


def mock_galaxies_with(gratings, filt):
    """Mock galaxies whose products are cubes in ``gratings`` and a ``filt`` image."""
    return [gid for gid, p in PLANS.items() if _mock_product_set(p) == (gratings, filt)]


def mock_galaxy_outputs(gratings, filt):
    """Output files of the ``mock_galaxy_*`` rule of one product set, ``{id}`` templated
    (:func:`ismcgm.mock.product_paths` of a galaxy of the set)."""
    gid = mock_galaxies_with(gratings, filt)[0]
    paths = smock.product_paths(PLANS[gid], f"{RESULTS}/mock")
    return {k: v.replace(f"{gid}/{gid}_", "{id}/{id}_") for k, v in paths.items()}


def mock_products():
    """Every file of the mock survey."""
    out = [f"{RESULTS}/mock/samples.tsv", f"{RESULTS}/mock/truth.json"]
    for gid in GALAXIES:
        out += list(smock.product_paths(PLANS[gid], f"{RESULTS}/mock").values())
    return out


def row_dict(gid):
    """Sample row of galaxy ``gid`` as a plain dict."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in SAMPLES.loc[gid].items()}


def sample_row(wildcards):
    """The galaxy's sample row (a ``params`` value: edits to the table trigger reruns)."""
    return row_dict(wildcards.id)


def mask_params(wildcards):
    """Parameters of the mask variant, with its name (the [C II] ones only where the variant uses [C II],
    so that editing them reruns only those variants)."""
    params = config["masks"][wildcards.variant]
    if params["cgm_outer"] == "tophat":
        params = {k: v for k, v in params.items() if not k.startswith("cii_")}
    # an unset optional parameter is left out, so that adding it to the schema reruns nothing
    return {"name": wildcards.variant, **{k: v for k, v in params.items() if v is not None}}


def image_path(wildcards):
    return SAMPLES.loc[wildcards.id, "image"]


def reference_cube_of(gid):
    row = SAMPLES.loc[gid]
    return row[f"cube_{sio.reference_grating(row)}"]


def reference_cube(wildcards):
    return reference_cube_of(wildcards.id)


def alma_for_masks(wildcards):
    """The galaxy's ALMA cube when the mask variant draws its CGM boundary from [C II]."""
    path = SAMPLES.loc[wildcards.id, "alma_cube"]
    needs = config["masks"][wildcards.variant]["cgm_outer"] != "tophat"
    return [path] if needs and path else []


def exclude_region(wildcards):
    """The galaxy's exclude_region file, if any (an input so edits trigger a rerun)."""
    path = SAMPLES.loc[wildcards.id, "exclude_region"]
    return [path] if path else []


def components_of(gid):
    """Component names of a galaxy (:func:`ismcgm.regions.components`)."""
    return ismcgm_regions.components(gid, SAMPLES.loc[gid, "merger"])


def region_names(gid):
    """(component, region, mask extension) triples of a galaxy (:func:`ismcgm.regions.galaxy_regions`)."""
    return ismcgm_regions.galaxy_regions(gid, SAMPLES.loc[gid, "merger"])


def spectra_of(variant, gid, grating):
    """Spectrum files of one galaxy and grating (one per component and region)."""
    return [f"{RESULTS}/spectra/{variant}/{c}_{r}_{grating}.fits" for c, r, _ in region_names(gid)]


def all_spectra(variant):
    return [s for gid in GALAXIES for g in gratings_of(gid) for s in spectra_of(variant, gid, g)]


def _extract_set(gid):
    """(single or merger, gratings) of a galaxy: what its spectrum file names depend on."""
    return ("merger" if SAMPLES.loc[gid, "merger"] else "single"), tuple(gratings_of(gid))


def extract_sets():
    """The distinct (kind, gratings) pairs of the sample (one ``extract_<kind>_<gratings>`` rule each)."""
    return sorted({_extract_set(g) for g in GALAXIES})


def galaxies_with(kind, gratings):
    return [g for g in GALAXIES if _extract_set(g) == (kind, gratings)]


ALMA_GALAXIES = [g for g in GALAXIES if SAMPLES.loc[g, "alma_cube"]]


def alma_cube_of(wildcards):
    """``[ALMA cube]`` of galaxy ``wildcards.id`` for its [C II] profile; ``[]`` without one or without the profile."""
    gid = wildcards.id
    return [SAMPLES.loc[gid, "alma_cube"]] if gid in CII_PROFILE_GALAXIES else []


def sim_maps():
    """Simulated [C II]/Hα maps: the config list, or SYNTHETIC stand-ins for the mock."""
    if config["cii"]["sims"]:
        return config["cii"]["sims"]
    return [f"{RESULTS}/mock/sims/synthsim{i:02d}.fits" for i in range(1, 7)] if MOCK else []


# Monte Carlo chunks (workflow/rules/fit.smk)
N_MC = config["mc"]["n_realisations"]
CHUNK = config["mc"]["chunk_size"]
CHUNKS = list(range(n_chunks(N_MC, CHUNK)))


def mc_inputs(wildcards):
    """Region spectra of every grating (spectrum-level draws), with the cubes and masks for cube-level draws."""
    gid = wildcards.id
    out = {"spectra": [s for g in gratings_of(gid) for s in spectra_of(wildcards.variant, gid, g)]}
    if config["mc"]["level"] == "cube":
        out["cubes"] = [SAMPLES.loc[gid, f"cube_{g}"] for g in gratings_of(gid)]
        out["masks"] = f"{RESULTS}/masks/{wildcards.variant}/{wildcards.id}.fits"
        out["alignment"] = f"{RESULTS}/alignment/{wildcards.id}.csv"
    return out


def all_chunks(wildcards):
    return [f"{RESULTS}/mc/{wildcards.variant}/chunks/{gid}_{c}.parquet" for gid in GALAXIES for c in CHUNKS]


# ---------------------------------------------------------------------------
# spatially resolved ratios (workflow/rules/resolved.smk, issue 18)
# ---------------------------------------------------------------------------
RESOLVED = config["resolved"]
CII_PROFILE_GALAXIES = ALMA_GALAXIES if RESOLVED["cii_profile"] else []


def resolved_galaxy_files(variant, kind):
    path = {
        "chunks": "chunks/{}.parquet",
        "geometry": "annuli/{}.csv",
        "annuli": "annuli/{}.fits",
        "cii": "cii/{}.csv",
        "cii_realisations": "cii/{}_realisations.parquet",
    }[kind]
    return [f"{RESULTS}/resolved/{variant}/{path.format(gid)}" for gid in GALAXIES]


def resolved_products():
    """Everything the resolved analysis adds to ``rule all``."""
    if not RESOLVED["enabled"]:
        return []
    out = []
    for v in VARIANTS:
        out += [
            f"{RESULTS}/tables/{v}/radial_profiles.csv",
            f"{RESULTS}/tables/{v}/radial_profile_median.csv",
            f"{RESULTS}/figures/{v}/fig8_profiles.pdf",
        ]
        if RESOLVED["voronoi"]["enabled"]:
            out += [f"{RESULTS}/figures/{v}/maps/{gid}_maps.pdf" for gid in GALAXIES]
        if MOCK:
            out.append(f"{RESULTS}/validation/{v}/profile_summary.json")
    return out


_MAPS_OUTPUT = (
    {
        "maps": f"{RESULTS}/resolved/{{variant}}/maps/{{id}}_maps.fits",
        "bins": f"{RESULTS}/resolved/{{variant}}/maps/{{id}}_bins.csv",
    }
    if RESOLVED["voronoi"]["enabled"]
    else {}
)


_report_flag = report  # a line may not start with ``report(`` outside a rule (it is a Snakefile keyword)


def maps_panels(kind):
    """Outputs of fig_maps, the map panel of every galaxy: ``pdf`` (in the report, labelled by galaxy) or ``png``."""
    paths = [f"{RESULTS}/figures/{{variant}}/maps/{gid}_maps.{kind}" for gid in GALAXIES]
    if kind == "png":
        return paths
    return [
        _report_flag(
            path,
            caption="../report/maps.rst",
            category="Maps",
            subcategory="{variant}",
            labels={"galaxy": gid},
        )
        for gid, path in zip(GALAXIES, paths)
    ]
