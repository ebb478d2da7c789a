"""The analysis chain end to end on the small test config (issues 4-6):
tables and figures exist with their contract columns, results are
bit-identical for any chunk size and core count, and caching is per product."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from ismcgm.io import read_table
from tests.conftest import REPO, TEST_CONFIG, run_snakemake, true_fluxes

#: every test here runs the workflow (pytest -m 'not e2e' skips them)
pytestmark = pytest.mark.e2e

V = "results/tables/default"


def test_contract_tables(e2e):
    cols = {
        "results/tables/alignment.csv": "id, grating, shift_ra_arcsec, shift_dec_arcsec, residual_arcsec",
        f"{V}/regions.csv": "id, component, region, n_spaxels, area_arcsec2, r_cgm_kpc",
        f"{V}/line_fluxes.csv": "id, component, region, grating, line, flux, flux_err, snr, detected, upper_limit, "
                                "flux_dustcorr, flux_dustcorr_err, ebv_gas, ebv_gas_err, velocity_kms, sigma_kms",
        f"{V}/ratios.csv": "id, component, region, ratio, log_value, log_err, limit, nii_lowsn, logmstar, merger",
        f"{V}/statistics.csv": "ratio, n, tau_b, p_tau, f_dep_mc, ks_p, f_rej_mc, shift_median, shift_p16, "
                               "shift_p84, sigma_med",
        f"{V}/mass_trend.csv": "ratio, mass_bin, n, shift_median, sigma_med",
        "results/validation/default/recovery.csv": "ratio, injected_shift, true_shift, measured_shift, sigma_med, "
                                                   "pull, within_2sigma",
    }
    for path, names in cols.items():
        df = read_table(e2e / path)
        assert list(df.columns)[: len(names.split(", "))] == names.split(", "), path
        assert len(df) > 0, path


def test_every_region_has_spectra_and_figures(e2e):
    regions = read_table(e2e / f"{V}/regions.csv")
    assert set(regions["region"]) == {"ISM", "CGM"}
    assert regions["component"].str.endswith(("_a", "_b")).any()  # the merger
    for _, r in regions.iterrows():
        assert list((e2e / "results/spectra/default").glob(f"{r['component']}_{r['region']}_*.fits"))
    for fig in ("fig1_masks", "fig2_spectra", "fig3_ratios", "fig4_d11", "fig6_cii", "validation_shifts"):
        for ext in ("pdf", "png"):
            assert (e2e / f"results/figures/default/{fig}.{ext}").stat().st_size > 1000


def _copy_run(e2e, work):
    """A copy of the end-to-end run (mtimes kept, so only what a new config touches reruns)."""
    shutil.copytree(e2e / "results", work / "results")
    shutil.copytree(e2e / ".snakemake", work / ".snakemake")


def _chunk_table(paths, grating):
    import pandas as pd

    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    df = df[df["grating"] == grating]
    return df.sort_values(["component", "region", "line", "realisation"], kind="stable").reset_index(drop=True)


def test_chunk_size_does_not_change_any_realisation(e2e, tmp_path):
    """Chunk size 1 (one job per realisation) reproduces chunk size 6 bit for bit (the merger, G395M/H)."""
    from ismcgm.samples import read_sample_table

    samples = read_sample_table(e2e / "results/mock/samples.tsv")
    gid = samples.index[samples["merger"]][0]
    grating = "g395h" if samples.loc[gid, "cube_g395h"] else "g395m"
    work = tmp_path / "c1"
    _copy_run(e2e, work)
    cfg = tmp_path / "c1.yaml"
    cfg.write_text("mc:\n  chunk_size: 1\n")
    targets = [f"results/mc/default/chunks/{gid}_{c}.parquet" for c in range(12)]
    run_snakemake(work, "--cores", "2", *targets, configfiles=(TEST_CONFIG, cfg))
    one = _chunk_table([work / t for t in targets], grating)
    six = _chunk_table([e2e / f"results/mc/default/chunks/{gid}_{c}.parquet" for c in range(2)], grating)
    pd.testing.assert_frame_equal(one, six, check_exact=True)


def test_line_fluxes_bit_identical_for_one_core_and_one_chunk(e2e, tmp_path):
    reference = (e2e / f"{V}/line_fluxes.csv").read_bytes()  # chunk_size 6, --cores 2
    work = tmp_path / "c12"
    _copy_run(e2e, work)
    cfg = tmp_path / "c12.yaml"
    cfg.write_text("mc:\n  chunk_size: 12\n")
    run_snakemake(work, "--cores", "1", f"{V}/line_fluxes.csv", configfiles=(TEST_CONFIG, cfg))
    assert (work / f"{V}/line_fluxes.csv").read_bytes() == reference


def test_changing_one_shift_reruns_only_what_depends_on_it(e2e, tmp_path):
    cfg = tmp_path / "o3.yaml"
    cfg.write_text("mock:\n  cgm_minus_ism_dex:\n    O3: 0.4\n")
    proc = run_snakemake(e2e, "-n", configfiles=(TEST_CONFIG, cfg))
    jobs = proc.stdout
    # a galaxy's mock products are one job (issue 17): its cubes and truth depend on the shift
    assert "rule mock_galaxy_" in jobs
    for cached in ("mock_sims", "cloudy_decks", "nii_bias"):
        assert f"rule {cached}:" not in jobs and f"\n{cached} " not in jobs, cached


def test_cii_mask_variants_run_in_the_workflow(e2e, tmp_path):
    """The [C II] variants take the ALMA cube as a masks input and reuse the cached mock and alignment."""
    work = tmp_path / "cii_variants"
    _copy_run(e2e, work)
    cfg = tmp_path / "cii.yaml"
    cfg.write_text("variants: [default, cii4r, cii3sigma]\n")
    targets = [f"results/tables/{v}/regions.csv" for v in ("cii4r", "cii3sigma")]
    dry = run_snakemake(work, "-n", *targets, configfiles=(TEST_CONFIG, cfg)).stdout
    assert "rule extract_" in dry and "_cii_cube.fits" in dry
    for cached in ("mock_galaxy_", "align:"):
        assert f"rule {cached}" not in dry, cached
    run_snakemake(work, "--cores", "2", *targets, configfiles=(TEST_CONFIG, cfg))
    default = read_table(work / "results/tables/default/regions.csv").set_index(["component", "region"])
    for variant, outer in (("cii4r", "4r_cii"), ("cii3sigma", "cii_3sigma")):
        reg = read_table(work / f"results/tables/{variant}/regions.csv").set_index(["component", "region"])
        assert set(reg["cgm_outer"]) <= {outer, "tophat"} and (reg["cgm_outer"] == outer).any(), reg
        ism = reg.xs("ISM", level="region")["n_spaxels"]
        assert (ism == default.xs("ISM", level="region")["n_spaxels"]).all()
        cgm = reg.xs("CGM", level="region")
        used = cgm["cgm_outer"] == outer
        assert (cgm["n_spaxels"] > 0).all()
        assert (cgm.loc[used, "n_spaxels"] != default.xs("CGM", level="region").loc[used[used].index, "n_spaxels"]).any()
        if outer == "4r_cii":
            assert (cgm.loc[used, "r_cii_kpc"].between(0.3, 4.0)).all(), cgm


def test_validation_summary_written(e2e):
    import json

    summary = json.loads((e2e / "results/validation/default/summary.json").read_text())
    assert "SYNTHETIC" in summary["label"] and summary["checks"]
    pulls = read_table(e2e / "results/validation/default/flux_pulls.csv")
    assert {"line", "n", "median_pull", "std_pull"} <= set(pulls.columns)


def test_report_contains_every_figure_and_main_table(e2e):
    run_snakemake(e2e, "--report", "report.html")
    html = (e2e / "report.html").read_text(errors="replace")
    for name in ("fig1_masks", "fig2_spectra", "fig3_ratios", "fig4_d11", "fig6_cii", "validation_shifts",
                 "statistics.csv", "ratios.csv", "recovery.csv", "line_fluxes.csv", "mock01_maps"):
        assert name in html, name
    for category in ("Masks", "Spectra", "Ratios", "Statistics", "Models", "Validation", "Maps"):
        assert category in html, category


def test_dust_corrected_balmer_recovers_ebv(e2e):
    """E(B-V)_gas from the measured Balmer decrement agrees with the truth through the same mask."""
    from ismcgm.dust import ebv_from_balmer
    from ismcgm.ratios import preferred_grating

    fluxes = preferred_grating(read_table(e2e / f"{V}/line_fluxes.csv"))
    true = preferred_grating(true_fluxes(e2e).assign(id=""))
    piv = true.pivot_table(index=["component", "region"], columns="line", values="true_flux")
    ebv_true = pd.Series(ebv_from_balmer(piv["HA"].to_numpy(), piv["HB"].to_numpy()), index=piv.index)
    meas = fluxes[fluxes["line"] == "HA"].set_index(["component", "region"])
    pulls = (meas["ebv_gas"] - ebv_true.reindex(meas.index)) / meas["ebv_gas_err"]
    ism = pulls.xs("ISM", level="region")
    assert (ism.abs() < 3).all(), ism
    assert (pulls.abs() < 3).mean() >= 0.85, pulls


def test_kill_mid_mc_and_resume_gives_identical_tables(e2e, tmp_path):
    """kill -9 of snakemake during the Monte Carlo, then --rerun-incomplete: same bytes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    work = tmp_path / "killed"
    _copy_run(e2e, work)
    shutil.rmtree(work / "results/mc")
    (work / f"{V}/line_fluxes.csv").unlink()
    cfg = tmp_path / "c3.yaml"
    cfg.write_text("mc:\n  chunk_size: 3\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(TEST_CONFIG), str(cfg), "--cores", "2", f"{V}/line_fluxes.csv"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    chunks = work / "results/mc/default/chunks"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(chunks.glob("*.parquet"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(chunks.glob("*.parquet")))
    assert 0 < n_done < 4 * 8, "the kill must land mid-MC"
    run_snakemake(work, "--unlock", configfiles=(TEST_CONFIG, cfg))
    run_snakemake(work, "--cores", "2", "--rerun-incomplete", f"{V}/line_fluxes.csv", configfiles=(TEST_CONFIG, cfg))
    assert (work / f"{V}/line_fluxes.csv").read_bytes() == (e2e / f"{V}/line_fluxes.csv").read_bytes()
