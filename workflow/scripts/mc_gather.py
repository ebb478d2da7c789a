"""Gather the Monte Carlo chunks into the line-flux table (SPEC 4-6)."""

from ismcgm import linefluxes
from ismcgm.io import atomic_path, read_chunks, write_table
from ismcgm.workflow_script import run


def main():
    par = snakemake.params
    chunks = read_chunks(snakemake.input)
    table, real, overlap = linefluxes.gather(chunks, par.detect_snr, par.intrinsic_ha_hb, par.overlap)
    comment = linefluxes.TABLE_COMMENT + f"\nf_stellar_nebular (continuum only) = {par.f_stellar_nebular}"
    write_table(table, snakemake.output.fluxes, comment=comment)
    with atomic_path(snakemake.output.realisations) as tmp:
        real.to_parquet(tmp, index=False)
    used = ("G395M/H (SPEC 5)" if par.overlap == "red" else
            f"inverse-variance combination, G235M scaled by {linefluxes.overlap_scale(overlap):.4f}")
    write_table(overlap, snakemake.output.overlap,
                comment="G395M (or G395H) / G235M flux ratio of lines detected in both gratings (SPEC 5); "
                        f"lines in both gratings used for the ratios: {used}")


run(snakemake, main)
