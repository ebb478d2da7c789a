"""SYNTHETIC simulation-like [C II]/Hα maps (stand-ins for SERRA, labelled as such)."""

from ismcgm import cii
from ismcgm import mock as smock
from ismcgm.io import atomic_path
from ismcgm.workflow_script import run


def main():
    sims = smock.mock_sim_maps(seed=snakemake.params.seed, n=len(snakemake.output))
    for sim, path in zip(sims, snakemake.output):
        with atomic_path(path) as tmp:
            cii.write_sim_maps(sim, tmp)


run(snakemake, main)
