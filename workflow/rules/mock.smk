"""The SYNTHETIC mock survey (SPEC section 14): written in the real file
formats, with its truth, deterministically from the `mock:` config section."""


localrules:
    mock_samples,
    mock_truth_json,


rule mock_cube:
    """One IFU cube of one mock galaxy (NIRSpec stage-3 ``_s3d`` or MUSE ``_cube``)."""
    output:
        f"{RESULTS}/mock/{{id}}/{{id}}_{{grating}}_{{kind}}.fits",
    log:
        f"{RESULTS}/logs/mock/{{id}}_{{grating}}_{{kind}}_cube.log",
    wildcard_constraints:
        kind="s3d|cube",
    params:
        plan=mock_plan("cube"),
        lines=config["lines"],
    script:
        "../scripts/mock_cube.py"


rule mock_truth:
    """Noiseless truth maps of one mock galaxy (each IFU grid and the ALMA grid)."""
    output:
        f"{RESULTS}/mock/{{id}}/{{id}}_truth.fits",
    log:
        f"{RESULTS}/logs/mock/{{id}}_truth.log",
    params:
        plan=mock_plan("truth"),
        lines=config["lines"],
    script:
        "../scripts/mock_truth.py"


rule mock_image:
    """The continuum image (NIRCam F277W/F444W or HST F125W) of one mock galaxy."""
    output:
        f"{RESULTS}/mock/{{id}}/{{id}}_{{filter}}_i2d.fits",
    log:
        f"{RESULTS}/logs/mock/{{id}}_{{filter}}_image.log",
    wildcard_constraints:
        filter="|".join(f.lower() for f in smock.FILTER_PIVOT_UM),
    params:
        plan=mock_plan("image"),
    script:
        "../scripts/mock_image.py"


rule mock_alma:
    """The ALMA [C II] cube of one mock galaxy (beam-correlated noise)."""
    output:
        f"{RESULTS}/mock/{{id}}/{{id}}_cii_cube.fits",
    log:
        f"{RESULTS}/logs/mock/{{id}}_alma.log",
    params:
        plan=mock_plan("alma"),
    script:
        "../scripts/mock_alma.py"


rule mock_samples:
    """The sample table of the mock survey, in the format a real user writes."""
    output:
        f"{RESULTS}/mock/samples.tsv",
    log:
        f"{RESULTS}/logs/mock/samples.log",
    params:
        table=MOCK_ROWS,
    script:
        "../scripts/mock_samples.py"


rule mock_truth_json:
    """The injected parameters of every mock galaxy (truth; used by tests and validation only)."""
    output:
        f"{RESULTS}/mock/truth.json",
    log:
        f"{RESULTS}/logs/mock/truth_json.log",
    params:
        plans=list(PLANS.values()),
        mock=config["mock"],
    script:
        "../scripts/mock_truth_json.py"
