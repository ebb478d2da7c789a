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
        """Every product of one mock galaxy: the IFU cubes (NIRSpec stage-3 ``_s3d`` or MUSE ``_cube``),
        the noiseless truth maps, the continuum image and (NIRSpec survey) the ALMA [C II] cube."""
        name:
            f"mock_galaxy_{'_'.join(_gratings)}_{_filt}"
        output:
            **mock_galaxy_outputs(_gratings, _filt),
        log:
            f"{RESULTS}/logs/mock/{{id}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/mock/{{id}}.tsv"
        wildcard_constraints:
            id="|".join(mock_galaxies_with(_gratings, _filt)),
        group:
            "galaxy"
        params:
            # the galaxy's plan before its paper-geometry sizes (the job applies them): a change reruns the job
            plan=lambda w: PLANS[w.id],
            lines=config["lines"],
        script:
            "../scripts/mock_galaxy.py"


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
