#!/usr/bin/env python3
"""Per-component N2 against the SYNTHETIC mock truth: where an aperture N2 shift comes from (issue 19).

    python bench/n2_selection.py RUN_DIR [VARIANT]

``RUN_DIR`` is a mock run whose ``validation`` job was run with ``--skip-script-cleanup`` (e.g.
``snakemake --directory RUN_DIR --forcerun validation --skip-script-cleanup``): its kept script holds the
job's inputs and params.  Prints, per component and region with an N2 value, the measured and true log N2
(truth maps through the same masks, as ``recovery.csv``), the pull (measured - true) / sigma (sigma the
16/84 side facing the truth), the *true* [N II]6583 S/N (true flux / measured error) and ``nii_lowsn``; then
the median pull per region and the measured and true shift over the same components.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

run = Path(sys.argv[1]).resolve()
variant = sys.argv[2] if len(sys.argv) > 2 else "default"
os.chdir(run)
script = sorted((run/".snakemake/scripts").glob("*.validation.py"))[-1].read_text()
ns = {"__file__": "x.py"}; exec(script.split("######## snakemake preamble end #########")[0], ns); sm = ns["snakemake"]
from ismcgm import cii, ratios, stats, validation
from ismcgm.io import read_table
inp, par = sm.input, sm.params
truth = json.loads(open(inp.truth_json).read())
cubes = iter(inp.cubes); alma = dict(zip(par.alma_galaxies, inp.alma))
true_df = pd.concat([validation.galaxy_true_fluxes(par.rows[gid], t, m, read_table(a), {g: next(cubes) for g in par.gratings[gid]}, par.regions[gid], alma.get(gid))
    for gid, t, m, a in zip(par.galaxies, inp.truth, inp.masks, inp.alignment)], ignore_index=True)
fluxes = pd.concat([read_table(inp.fluxes)] + [read_table(p) for p in inp.cii], ignore_index=True)
samples = pd.DataFrame(par.samples)
tf = validation.true_fluxes_as_measured(true_df, fluxes, par.intrinsic_ha_hb)
tr = ratios.compute_ratios(ratios.preferred_grating(cii.native_resolution(tf)), samples)
meas = read_table(f"results/tables/{variant}/ratios.csv")
k = ["component","region","ratio"]
m = meas.merge(tr[k+["log_value"]].rename(columns={"log_value":"true"}), on=k)
m = m[(m.ratio=="N2") & (m.limit=="none")].copy()
m["sig"] = np.where(m.log_value < m.true, m.log_p84-m.log_value, m.log_value-m.log_p16)
m["pull"] = (m.log_value-m.true)/m.sig
# true S/N of NII6583 in that region
f = fluxes[fluxes.line=="NII6583"][["component","region","grating","flux_err"]]
t = tf[tf.line=="NII6583"][["component","region","grating","flux"]].rename(columns={"flux":"tflux"})
sn = f.merge(t, on=["component","region","grating"]); sn["true_snr"] = sn.tflux/sn.flux_err
sn = sn.sort_values("true_snr").drop_duplicates(["component","region"], keep="last")
m = m.merge(sn[["component","region","true_snr"]], on=["component","region"], how="left")
print(m[["component","region","log_value","true","sig","pull","true_snr","nii_lowsn"]].to_string())
print(m.groupby("region")["pull"].agg(["size","median","mean"]))
# shifts over pairs
p = m.pivot_table(index="component", columns="region", values=["log_value","true"])
d = (p["log_value"]["CGM"]-p["log_value"]["ISM"]).dropna(); dt=(p["true"]["CGM"]-p["true"]["ISM"]).dropna()
print("measured shift median", d.median(), "true", dt.median(), "n", len(d))
