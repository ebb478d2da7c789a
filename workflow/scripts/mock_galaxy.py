"""Write every product of one mock galaxy (SYNTHETIC data) in one job: see ismcgm.mock."""

from ismcgm import mock as smock
from ismcgm.workflow_script import run


def main():
    plan, out = smock.realise_plan(snakemake.params.plan), snakemake.output
    plans = {p: smock.product_plan(plan, p) for p in ("cube", "truth", "image", "alma")}
    for grating in plans["cube"]["ifu"]["gratings"]:
        smock.write_cube(plans["cube"], grating, out[f"cube_{grating}"])
    smock.write_truth(plans["truth"], out.truth)
    smock.write_image(plans["image"], out.image)
    if hasattr(out, "alma_cube"):  # the NIRSpec survey's galaxies have an ALMA cube (MUSE's none)
        smock.write_alma(plans["alma"], out.alma_cube)


run(snakemake, main)
