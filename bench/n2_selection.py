#!/usr/bin/env python3
"""Per-component N2 against the SYNTHETIC mock truth: where an aperture N2 shift comes from (issue 19).

    python bench/n2_selection.py RUN_DIR [VARIANT]

``RUN_DIR`` is a mock run whose ``validation`` job was run with ``--skip-script-cleanup`` (e.g.
``snakemake --directory RUN_DIR --forcerun validation --skip-script-cleanup``): its kept script holds the
job's inputs and params, so the truth is formed exactly as the validation job forms it
(:func:`ismcgm.validation.survey_true_fluxes`, :func:`ismcgm.validation.true_ratios`).  Prints, per
component and region with an N2 value, the measured and true log N2, the pull (measured - true) / sigma
(sigma the 16/84 side facing the truth), the *true* [N II]6583 S/N (true flux / measured error) and
``nii_lowsn``; then the median pull per region and the measured and true shift over the same components.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ismcgm import validation
from ismcgm.io import read_table

PREAMBLE_END = "######## snakemake preamble end #########"


def validation_job(run: Path):
    """The ``snakemake`` object (inputs, params) of the run's kept validation script."""
    scripts = sorted((run / ".snakemake" / "scripts").glob("*.validation.py"), key=lambda p: p.stat().st_mtime_ns)
    if not scripts:
        raise SystemExit(f"n2_selection: no kept validation script under {run}/.snakemake/scripts "
                         "(rerun it with --forcerun validation --skip-script-cleanup)")
    ns = {"__file__": str(scripts[-1])}
    exec(scripts[-1].read_text().split(PREAMBLE_END)[0], ns)
    return ns["snakemake"]


def main(argv) -> int:
    run = Path(argv[0]).resolve()
    variant = argv[1] if len(argv) > 1 else "default"
    os.chdir(run)  # the job's paths are relative to the run directory
    job = validation_job(run)
    inp, par = job.input, job.params
    true_df = validation.survey_true_fluxes(par.galaxies, par.rows, inp.truth, inp.masks, inp.alignment, inp.cubes,
                                            par.gratings, par.regions, dict(zip(par.alma_galaxies, inp.alma)))
    fluxes = pd.concat([read_table(inp.fluxes)] + [read_table(p) for p in inp.cii], ignore_index=True)
    truth = validation.true_ratios(true_df, fluxes, pd.DataFrame(par.samples), par.intrinsic_ha_hb)

    keys = ["component", "region", "ratio"]
    m = read_table(f"results/tables/{variant}/ratios.csv").merge(
        truth[keys + ["log_value"]].rename(columns={"log_value": "true"}), on=keys)
    m = m[(m["ratio"] == "N2") & (m["limit"] == "none")].copy()
    m["sigma"] = np.where(m["log_value"] < m["true"], m["log_p84"] - m["log_value"], m["log_value"] - m["log_p16"])
    m["pull"] = (m["log_value"] - m["true"]) / m["sigma"]

    # true S/N of [N II]6583: true flux / measured error, in the grating with the larger value
    nii = ["component", "region", "grating"]
    err = fluxes.loc[fluxes["line"] == "NII6583", nii + ["flux_err"]]
    true = true_df.loc[true_df["line"] == "NII6583", nii + ["true_flux"]]
    snr = err.merge(true, on=nii)
    snr["true_snr"] = snr["true_flux"] / snr["flux_err"]
    snr = snr.sort_values("true_snr").drop_duplicates(["component", "region"], keep="last")
    m = m.merge(snr[["component", "region", "true_snr"]], on=["component", "region"], how="left")

    print(m[["component", "region", "log_value", "true", "sigma", "pull", "true_snr", "nii_lowsn"]].to_string())
    print(m.groupby("region")["pull"].agg(["size", "median", "mean"]).to_string())
    wide = m.pivot_table(index="component", columns="region", values=["log_value", "true"])
    measured = (wide["log_value"]["CGM"] - wide["log_value"]["ISM"]).dropna()
    true_shift = (wide["true"]["CGM"] - wide["true"]["ISM"]).dropna()
    print(f"N2 shift over the {len(measured)} components with both values: measured median "
          f"{measured.median():+.3f}, true {true_shift.median():+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
