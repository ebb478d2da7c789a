"""The SYNTHETIC mock survey (SPEC section 14): written in the real file
formats, with its truth, deterministically from the `mock:` config section."""


localrules:
    mock_samples,
    mock_truth_json,


# One job per galaxy writes all its products (IFU cubes, truth, image, ALMA cube)
# in one interpreter: start-up and imports cost more than the writing.  A rule's
# outputs cannot vary by galaxy, so there is one rule per product set, e.g.
# mock_galaxy_g235m_g395m_f444w (G235M and G395M cubes, NIRCam F444W image).
for _gratings, _filt in mock_product_sets():

    rule:
        """Every product of one mock galaxy: the NIRSpec IFU stage-3 cubes, the noiseless truth maps,
        the continuum image and the ALMA [C II] cube (beam-correlated noise)."""
        name:
            f"mock_galaxy_{'_'.join(_gratings)}_{_filt}"
        output:
            **{f"cube_{g}": f"{RESULTS}/mock/{{id}}/{{id}}_{g}_s3d.fits" for g in _gratings},
            truth=f"{RESULTS}/mock/{{id}}/{{id}}_truth.fits",
            image=f"{RESULTS}/mock/{{id}}/{{id}}_{_filt}_i2d.fits",
            alma=f"{RESULTS}/mock/{{id}}/{{id}}_cii_cube.fits",
        log:
            f"{RESULTS}/logs/mock/{{id}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/mock/{{id}}.tsv"
        wildcard_constraints:
            id="|".join(mock_galaxies_with(_gratings, _filt)),
        group:
            "galaxy"
        params:
            # each product's own part of the plan: a params change reruns the galaxy's job
            plans=lambda w: {p: smock.product_plan(PLANS[w.id], p) for p in ("cube", "truth", "image", "alma")},
        script:
            "../scripts/mock_galaxy.py"


rule mock_samples:
    """The sample table of the mock survey, in the format a real user writes."""
    output:
        f"{RESULTS}/mock/samples.tsv",
    log:
        f"{RESULTS}/logs/mock/samples.log",
    params:
        table=SAMPLES.to_dict(orient="records") if MOCK else [],
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
