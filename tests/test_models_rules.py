"""Tests of the model rules (workflow/rules/models.smk) and their glue (ismcgm.cloudy, ismcgm.abundances).

The rule file is exercised through a small Snakefile in ``tmp_path`` that
includes ``common.smk`` and ``models.smk`` only, with hand-made inputs
(statistics, regions, MC realisations) standing in for the upstream stages,
and a fake Cloudy executable for the ``cloudy_run`` path.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from ismcgm import abundances, cloudy
from ismcgm.abundances import ABUNDANCE_COLUMNS, DELTA_COLUMNS
from ismcgm.cloudy import DEFAULT_CLOUDY_CONFIG
from ismcgm.io import read_table
from ismcgm.niibias import DEFAULT_NII_BIAS_CONFIG
from tests.conftest import REPO, TEST_CONFIG

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

# ---------------------------------------------------------------------------
# hand-made inputs
# ---------------------------------------------------------------------------

#: Intrinsic fluxes (Hbeta = 1) of the fake realisations.
_FLUXES = {"OII3728": 2.0, "HB": 1.0, "OIII4959": 4.0 / 3.0, "OIII5007": 4.0, "HA": 2.86, "NII6583": 0.3,
           "NII6548": 0.1}
_GRATING = {"OII3728": "g235m", "HB": "g395m", "OIII4959": "g395m", "OIII5007": "g395m", "HA": "g395m",
            "NII6583": "g395m", "NII6548": "g395m"}


def fake_realisations(n_real=20, seed=0) -> pd.DataFrame:
    """MC realisations of two components: HB also in G235M (biased), one CGM without [N II]."""
    rng = np.random.default_rng(seed)
    rows = []
    comps = [("mockA", "mockA"), ("mockB", "mockB_a"), ("mockB", "mockB_b")]
    for gid, comp in comps:
        for region, scale in (("ISM", 1.0), ("CGM", 0.3)):
            for line, f0 in _FLUXES.items():
                f = f0 * scale * (0.5 if line.startswith("NII") and region == "CGM" else 1.0)
                if comp == "mockB_b" and region == "CGM" and line.startswith("NII"):
                    f = 0.0  # undetected
                gratings = [_GRATING[line]] + (["g235m"] if line == "HB" else [])
                for grating in gratings:
                    bias = 0.5 if grating == "g235m" and line == "HB" else 1.0
                    for i in range(n_real):
                        flux = f * bias + rng.normal(0.0, 0.02 * scale)
                        rows.append({"id": gid, "component": comp, "region": region, "grating": grating,
                                     "line": line, "realisation": i, "flux": flux, "flux3": flux,
                                     "flux_dustcorr": 1.1 * flux, "ebv": 0.05})
    return pd.DataFrame(rows)


def fake_statistics() -> pd.DataFrame:
    ratios = ["O3", "O2", "O32", "R23", "N2", "N2O2", "BALMER"]
    p16 = np.linspace(-0.2, 0.1, len(ratios))
    return pd.DataFrame({"ratio": ratios, "n": 10, "shift": p16 + 0.05, "shift_p16": p16, "shift_p84": p16 + 0.1})


def fake_regions() -> pd.DataFrame:
    return pd.DataFrame({"id": ["mockA"] * 2 + ["mockB"] * 2, "component": ["mockA"] * 2 + ["mockB_a"] * 2,
                         "region": ["ISM", "CGM"] * 2, "n_spaxels": [10, 40, 12, 50],
                         "area_arcsec2": [0.1, 0.4, 0.12, 0.5], "r_cgm_kpc": [2.5, 2.5, 4.0, 4.0]})


# ---------------------------------------------------------------------------
# abundance input
# ---------------------------------------------------------------------------


def test_abundance_input_prefers_g395m_and_forms_ratios():
    real = fake_realisations()
    inp = abundances.abundance_input_from_realisations(real, detect_snr=None)
    assert list(inp.columns) == ["id", "component", "region", "mc", "N2O2", "R23"]
    assert len(inp) == 3 * 2 * 20
    one = inp[(inp["component"] == "mockA") & (inp["region"] == "ISM") & (inp["mc"] == 3)].iloc[0]
    sel = real[(real["component"] == "mockA") & (real["region"] == "ISM") & (real["realisation"] == 3)]
    fd = {(r.line, r.grating): r.flux_dustcorr for r in sel.itertuples()}
    assert one["N2O2"] == pytest.approx(fd[("NII6583", "g395m")] / fd[("OII3728", "g235m")])
    r23 = (fd[("OIII4959", "g395m")] + fd[("OIII5007", "g395m")] + fd[("OII3728", "g235m")]) / fd[("HB", "g395m")]
    assert one["R23"] == pytest.approx(r23)  # G395M Hbeta, not the (halved) G235M one
    assert np.median(inp["R23"]) == pytest.approx((4 / 3 + 4 + 2) / 1, rel=0.05)


def test_abundance_input_drops_undetected_nii():
    inp = abundances.abundance_input_from_realisations(fake_realisations(), detect_snr=3.0)
    bad = inp[(inp["component"] == "mockB_b") & (inp["region"] == "CGM")]
    assert bad["N2O2"].isna().all() and bad["R23"].notna().all()
    good = inp[~((inp["component"] == "mockB_b") & (inp["region"] == "CGM"))]
    assert good["N2O2"].notna().all()


def test_abundance_input_missing_columns():
    with pytest.raises(ValueError, match="flux_dustcorr"):
        abundances.abundance_input_from_realisations(fake_realisations().drop(columns="flux_dustcorr"))


def test_abundance_tables_from_realisations():
    from ismcgm.abundances import abundance_table

    inp = abundances.abundance_input_from_realisations(fake_realisations(), detect_snr=3.0)
    tab, delta = abundance_table(inp), abundances.abundance_delta_table(inp)
    per = delta[delta["id"] != "SAMPLE"]
    assert set(zip(per["id"], per["component"])) == {("mockA", "mockA"), ("mockB", "mockB_a"), ("mockB", "mockB_b")}
    assert len(per) == 3 * 2
    assert tuple(tab.columns) == ABUNDANCE_COLUMNS and tuple(delta.columns) == DELTA_COLUMNS
    strom = delta[(delta["method"] == "strom17") & (delta["component"] == "mockA")].iloc[0]
    assert strom["delta_log_no"] == pytest.approx(0.65 * np.log10(0.5), abs=0.03)  # CGM [N II] halved
    sample = delta[delta["id"] == "SAMPLE"]
    assert set(sample["method"]) == {"pagel92", "strom17"}
    assert (sample["n"] == 2).all()  # mockB_b has no CGM N/O


# ---------------------------------------------------------------------------
# observed boxes
# ---------------------------------------------------------------------------


def test_observed_boxes_span_the_r_cgm_range():
    boxes = cloudy.observed_boxes(fake_statistics(), fake_regions())
    assert list(boxes.columns) == ["ratio", "p16", "p84", "r_min", "r_max"]
    assert (boxes["r_min"] == 2.5).all() and (boxes["r_max"] == 4.0).all()
    row = boxes[boxes["ratio"] == "O2"].iloc[0]
    stats = fake_statistics().set_index("ratio")
    assert row["p16"] == stats.loc["O2", "shift_p16"] and row["p84"] == stats.loc["O2", "shift_p84"]


def test_observed_boxes_need_radii():
    regions = fake_regions().assign(r_cgm_kpc=np.nan)
    with pytest.raises(ValueError, match="r_cgm_kpc"):
        cloudy.observed_boxes(fake_statistics(), regions)


# ---------------------------------------------------------------------------
# Cloudy glue
# ---------------------------------------------------------------------------


def test_cloudy_models_from_config_section():
    section = {"executable": "/x/cloudy.exe", "grid": "hcm_popstar", **DEFAULT_CLOUDY_CONFIG}
    assert cloudy.cloudy_models(section) == cloudy.model_grid_spec()
    runs = cloudy.cloudy_runs(section)
    assert len(runs) == 4 * 3 + 3 * 3  # both N/H variants share the 1 kpc slabs
    assert set(runs) == {m["name"] for m in cloudy.model_grid_spec()}
    small = {"radii_kpc": [1, 5], "density_laws": [{"name": "const", "alpha": 0.0}]}
    assert cloudy.cloudy_runs(small).keys() == {"r01_const_nh-4.6", "r05_const_nh-4.6", "r05_const_nh-5.1"}
    assert cloudy.cloudy_runs({**small, "density_laws": {"const": 0.0}}).keys() == cloudy.cloudy_runs(small).keys()
    with pytest.raises(ValueError, match="twice"):
        cloudy.cloudy_runs({"density_laws": [{"name": "a", "alpha": 0}, {"name": "a", "alpha": 1}]})


def test_grid_table_columns():
    grid = cloudy.model_grid(cloudy.model_grid_spec(), grid="hcm_bpass")
    table = cloudy.grid_table(grid)
    head = ["r_kpc", "density_law", "nh_variant", "log_nh", "log_u", "grid_source"]
    assert list(table.columns[:6]) == head
    assert list(table.columns[6:6 + len(cloudy.MODEL_LINES)]) == list(cloudy.MODEL_LINES)
    assert (table["HB"][~table["missing"]] == 1.0).all()


_FAKE_CLOUDY = '''#!{python}
"""Fake Cloudy: '-r name' reads name.in and writes name.out and name.lines."""
import sys
name = sys.argv[sys.argv.index("-r") + 1]
deck = open(name + ".in").read()
hden = float([ln.split()[1] for ln in deck.splitlines() if ln.startswith("hden")][0])
mode = "{mode}"
labels = ["H  1 4861.33A", "H  1 6562.81A", "O  2 3726.03A", "O  2 3728.81A", "O  3 4958.91A",
          "O  3 5006.84A", "N  2 6548.05A", "N  2 6583.45A", "C  2 157.636m"]
o3 = 3.0 * 10 ** (0.3 * (hden - 2.0))
values = [1.0, 2.9, 0.5, 0.7, o3 / 3, o3, 0.1, 0.3, 0.05]
with open(name + ".lines", "w") as fh:
    fh.write("#lineslist\\t" + "\\t".join(labels) + "\\n")
    fh.write("iteration 2\\t" + "\\t".join(f"{{v:.4e}}" for v in values) + "\\n")
with open(name + ".out", "w") as fh:
    fh.write(" title " + name + "\\n")
    if mode != "crash":
        fh.write(" [Stop in cdMain at ../maincl.cpp:547, Cloudy exited OK]\\n")
'''


def fake_cloudy(tmp_path, mode="ok"):
    exe = tmp_path / f"fake_cloudy_{mode}.py"
    exe.write_text(_FAKE_CLOUDY.format(python=sys.executable, mode=mode))
    exe.chmod(0o755)
    return exe


def _deck(tmp_path, name="r05_const_nh-4.6"):
    model = cloudy.cloudy_runs({"radii_kpc": [1, 5], "density_laws": {"const": 0.0}})[name]
    decks = tmp_path / "decks"
    cloudy.write_deck(model, decks / f"{name}.in")
    cloudy.write_line_list_file(decks / model["line_list_file"])
    return decks, name, model


def test_run_cloudy_moves_outputs(tmp_path):
    decks, name, model = _deck(tmp_path)
    sed = tmp_path / "seds" / "my.sed"
    sed.parent.mkdir()
    sed.write_text("fake sed\n")
    out, lines = cloudy.run_cloudy(str(fake_cloudy(tmp_path)), name, decks / f"{name}.in",
                                   decks / model["line_list_file"], decks / f"{name}.out",
                                   decks / f"{name}.lines", sed_file=str(sed))
    assert out.is_file() and lines.is_file()
    assert not (decks / f".run_{name}").exists()
    raw = cloudy.parse_line_list(lines, out)
    assert raw["O  3 5006.84A"] == pytest.approx(3.0, rel=1e-3)  # n_H = 100 cm^-3 (const law)


def test_run_cloudy_unfinished_run_fails(tmp_path):
    decks, name, model = _deck(tmp_path)
    with pytest.raises(ValueError, match="did not finish"):
        cloudy.run_cloudy(str(fake_cloudy(tmp_path, "crash")), name, decks / f"{name}.in",
                          decks / model["line_list_file"], decks / f"{name}.out", decks / f"{name}.lines")
    assert not (decks / f"{name}.out").exists()
    assert not (decks / f".run_{name}").exists()  # no scratch folder survives (issue 15)


def test_run_cloudy_missing_executable_leaves_no_scratch(tmp_path):
    decks, name, model = _deck(tmp_path)
    with pytest.raises(ValueError, match="cloudy.executable"):
        cloudy.run_cloudy(str(tmp_path / "no_such_cloudy"), name, decks / f"{name}.in",
                          decks / model["line_list_file"], decks / f"{name}.out", decks / f"{name}.lines")
    assert sorted(p.name for p in decks.iterdir()) == sorted([f"{name}.in", model["line_list_file"]])


def test_run_cloudy_missing_executable(tmp_path):
    decks, name, model = _deck(tmp_path)
    with pytest.raises(ValueError, match="cloudy.executable"):
        cloudy.run_cloudy(str(tmp_path / "no_such_cloudy"), name, decks / f"{name}.in",
                          decks / model["line_list_file"], decks / f"{name}.out", decks / f"{name}.lines")


# ---------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------


def _filled(cfg):
    from ismcgm.workflow_config import check_config

    check_config(cfg, SCHEMA)
    return cfg


def test_schema_defaults_mirror_the_library():
    cfg = _filled({"samples": "mock"})
    model_cfg = cloudy.cloudy_model_config(cfg["cloudy"])
    assert model_cfg == DEFAULT_CLOUDY_CONFIG
    assert cloudy.cloudy_models(cfg["cloudy"]) == cloudy.model_grid_spec()
    assert cfg["cloudy"]["executable"] is None and cfg["cloudy"]["grid"] == "hcm_bpass"
    assert cfg["nii_bias"] == DEFAULT_NII_BIAS_CONFIG


def test_config_yaml_lists_the_defaults():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    defaults = _filled({"samples": "mock"})
    assert cfg["cloudy"] == defaults["cloudy"]
    assert cfg["nii_bias"] == defaults["nii_bias"]


@pytest.mark.parametrize("section, word", [
    ({"cloudy": {"radii_kpc": [5, 10]}}, "cloudy.radii_kpc"),
    ({"cloudy": {"grid": "nosuch"}}, "cloudy.grid"),
    ({"cloudy": {"execuatble": "x"}}, "execuatble"),
    ({"nii_bias": {"snr": [0]}}, "nii_bias.snr"),
])
def test_bad_model_config_is_one_line(section, word):
    from ismcgm.workflow_config import ConfigError

    with pytest.raises(ConfigError, match="-- fix:") as err:
        _filled({"samples": "mock", **section})
    assert word in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------
# the rules, through a small Snakefile
# ---------------------------------------------------------------------------

_SNAKEFILE = """
configfile: "{repo}/config.yaml"
include: "{repo}/workflow/rules/common.smk"
include: "{repo}/workflow/rules/models.smk"

rule all:
    default_target: True
    input:
        MODEL_PRODUCTS,
"""


def _workdir(tmp_path, extra: dict):
    (tmp_path / "Snakefile").write_text(_SNAKEFILE.format(repo=REPO))
    tables = tmp_path / "results" / "tables" / "default"
    tables.mkdir(parents=True)
    fake_statistics().to_csv(tables / "statistics.csv", index=False)
    fake_regions().to_csv(tables / "regions.csv", index=False)
    mcdir = tmp_path / "results" / "mc" / "default"
    mcdir.mkdir(parents=True)
    fake_realisations().to_parquet(mcdir / "realisations.parquet", index=False)
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(yaml.safe_dump(extra))
    return cfg


def _snakemake(tmp_path, cfg, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(TEST_CONFIG), str(cfg), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.mark.e2e
def test_rules_without_executable(tmp_path):
    laws = [{"name": "r-1.5", "alpha": -1.5}, {"name": "r-2", "alpha": -2.0}]  # the laws of Fig. 7
    small = {"radii_kpc": [1, 10], "density_laws": laws}
    cfg = _workdir(tmp_path, {"nii_bias": {"snr": [3, 10], "n_trials": 20}, "cloudy": small})
    _snakemake(tmp_path, cfg, "--cores", "2")
    res = tmp_path / "results"
    runs = cloudy.cloudy_runs(small)
    assert len(runs) == 6
    for name, model in runs.items():
        assert (res / "cloudy/decks" / f"{name}.in").read_text() == cloudy.deck_text(model)
    assert (res / "cloudy/decks/ismcgm_linelist.dat").is_file()
    grid = read_table(res / "cloudy/grid.csv")
    assert list(grid.columns) == list(cloudy.GRID_COLUMNS)
    assert len(grid) == len(cloudy.cloudy_models(small)) and set(grid["grid_source"]) == {"hcm_bpass"}
    delta = read_table(res / "cloudy/delta_ratios.csv")
    assert np.allclose(delta.loc[delta["r_kpc"] == 1, "delta_log_ratio"].dropna(), 0.0)
    for f in ("fig5_cloudy", "fig7_nitrogen"):
        for ext in ("pdf", "png"):
            assert (res / f"figures/default/{f}.{ext}").stat().st_size > 0
    assert tuple(read_table(res / "tables/default/abundances.csv").columns) == ABUNDANCE_COLUMNS
    assert tuple(read_table(res / "tables/default/abundances_delta.csv").columns) == DELTA_COLUMNS
    nb = pd.read_csv(res / "tables/nii_bias.csv")
    assert list(nb.columns) == ["snr", "n_trials", "median_fitted_over_true", "p16", "p84"]
    assert nb["snr"].tolist() == [3.0, 10.0] and (nb["n_trials"] == 20).all()
    assert (res / "figures/nii_bias.png").is_file()
    for log in ("cloudy/grid.log", "fig5/default.log", "abundances/default.log", "nii_bias.log"):
        assert (res / "logs" / log).is_file(), log
    # nothing left to do; no Cloudy runs were planned
    proc = _snakemake(tmp_path, cfg, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.e2e
def test_rules_with_a_cloudy_executable(tmp_path):
    small = {"radii_kpc": [1, 5], "density_laws": [{"name": "r-2", "alpha": -2.0}]}
    cfg = _workdir(tmp_path, {"cloudy": {"executable": str(fake_cloudy(tmp_path)), **small}})
    grid_csv = "results/cloudy/grid.csv"
    _snakemake(tmp_path, cfg, "--cores", "2", grid_csv, "results/cloudy/delta_ratios.csv")
    decks = tmp_path / "results/cloudy/decks"
    assert sorted(p.name for p in decks.glob("*.lines")) == sorted(f"{n}.lines" for n in cloudy.cloudy_runs(small))
    grid = read_table(tmp_path / grid_csv)
    assert set(grid["grid_source"]) == {"cloudy"} and not grid["missing"].any()
    delta = read_table(tmp_path / "results/cloudy/delta_ratios.csv")
    o3 = delta[(delta["ratio"] == "O3") & (delta["r_kpc"] == 5) & (delta["nh_variant"] == "fiducial")]
    # the fake Cloudy's O3 scales as n_H^0.3 and n_H(5 kpc) = n_H(1 kpc) / 25
    assert o3["delta_log_ratio"].iloc[0] == pytest.approx(-0.3 * np.log10(25.0), abs=1e-3)
    n2 = delta[(delta["ratio"] == "N2") & (delta["r_kpc"] == 5)]
    assert len(n2) == 2
    assert (tmp_path / "results/logs/cloudy/run/r05_r-2_nh-5.1.log").is_file()


@pytest.mark.e2e
def test_dry_run_plans_one_cloudy_run_per_model(tmp_path):
    cfg = _workdir(tmp_path, {"cloudy": {"executable": "/opt/cloudy/cloudy.exe"}})
    proc = _snakemake(tmp_path, cfg, "-n", "--quiet", "rules")
    text = proc.stdout + proc.stderr
    counts = dict(
        (ln.split()[0], int(ln.split()[1])) for ln in text.splitlines()
        if len(ln.split()) == 2 and ln.split()[1].isdigit()
    )
    n_runs = len(cloudy.cloudy_runs(DEFAULT_CLOUDY_CONFIG))
    assert counts.get("cloudy_run") == n_runs
    # the decks and the line list are written by one job (issue 17: job start-up costs more than a deck)
    assert counts.get("cloudy_decks") == 1 and counts.get("cloudy_grid") == 1


@pytest.mark.e2e
def test_bad_cloudy_section_fails_before_any_job(tmp_path):
    cfg = _workdir(tmp_path, {"cloudy": {"radii_kpc": [2, 5]}})
    proc = _snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "-- fix:" in ln]
    assert len(lines) == 1 and "radii_kpc" in lines[0]

