"""[C II]/Hα of simulation maps: inner/outer ratios and radial profiles (SPEC 11)."""

from ismcgm import cii
from ismcgm.io import write_table
from ismcgm.workflow_script import run


def main():
    profiles, summary = cii.sim_tables([cii.read_sim_maps(p) for p in snakemake.input])
    write_table(profiles, snakemake.output.profiles,
                comment="[C II]/Ha radial profiles of the simulation maps, normalised at 1.5 kpc")
    write_table(summary, snakemake.output.summary,
                comment="[C II]/Ha within r < 3 kpc (ratio_inner) and 3 < r < 15 kpc (ratio_outer)")


run(snakemake, main)
