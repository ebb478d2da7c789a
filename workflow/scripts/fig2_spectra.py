"""Figure 2: an example galaxy's ISM and CGM spectra with the best-fit model."""

from ismcgm import extract
from ismcgm.linefluxes import nominal_model
from ismcgm.plots.fig2_spectra import plot_fig2
from ismcgm.workflow_script import run


def main():
    row, fit = snakemake.params.row, snakemake.params.fit
    panels = []
    for path in snakemake.input.spectra:
        s = extract.read_spectrum(path)
        grating = s.meta["GRATING"]
        panels.append({"label": f"{s.meta['COMPONENT']} {s.meta['REGION']} {grating.upper()}",
                       "wave_um": s.wave_um, "flux": s.flux, "err": s.err, "model": nominal_model(s, row["z"], fit),
                       "z": row["z"], "grating": grating})
    plot_fig2(panels, snakemake.output.pdf, snakemake.output.png, title=f"{row['id']}",
              synthetic=snakemake.params.synthetic)


run(snakemake, main)
