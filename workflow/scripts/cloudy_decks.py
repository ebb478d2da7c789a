"""Cloudy input deck of every model and the line-list file the decks save (SPEC 9)."""

from ismcgm import cloudy
from ismcgm.io import atomic_path
from ismcgm.workflow_script import run


def main():
    with atomic_path(snakemake.output.line_list) as tmp:
        cloudy.write_line_list_file(tmp)
    for model, path in zip(snakemake.params.models, snakemake.output.decks):
        with atomic_path(path) as tmp:
            cloudy.write_deck(model, tmp)


run(snakemake, main)
