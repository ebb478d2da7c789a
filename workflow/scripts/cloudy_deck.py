"""Cloudy input deck of one model, or the line-list file the decks save (SPEC 9)."""

from ismcgm import cloudy
from ismcgm.io import atomic_path
from ismcgm.workflow_script import run


def main():
    with atomic_path(snakemake.output[0]) as tmp:
        if "model" in snakemake.wildcards.keys():
            cloudy.write_deck(snakemake.params.model, tmp)
        else:
            cloudy.write_line_list_file(tmp)


run(snakemake, main)
