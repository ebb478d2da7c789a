"""Radial-profile table of the sample and its median profile with bootstrap errors (issue 18)."""

import pandas as pd

from ismcgm import resolved
from ismcgm.io import read_table, write_table
from ismcgm.workflow_script import run


def main():
    inp, out = snakemake.input, snakemake.output
    profiles = pd.concat([read_table(p) for p in inp.profiles], ignore_index=True)
    geometry = pd.concat([read_table(p) for p in inp.geometry], ignore_index=True)
    write_table(profiles.loc[:, resolved.PROFILE_COLUMNS], out.table, comment=resolved.TABLE_COMMENT)
    write_table(geometry, out.annuli, comment="annuli of the radial profiles: spaxels, fractions of them in the "
                                              "component's ISM/CGM masks, the masks' circularised radii [kpc]")
    median = resolved.median_profile(profiles, snakemake.params.seed)
    write_table(median, out.median, comment="sample median radial profile per ratio (components with a value); "
                                            f"p16/p84: {resolved.N_BOOTSTRAP} bootstrap medians, components "
                                            "resampled and each point redrawn within its errors")


run(snakemake, main)
