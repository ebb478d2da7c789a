"""Tests of ismcgm.cloudy: model grid, decks, Cloudy output, packaged grids, Delta ratios."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ismcgm import cloudy
from ismcgm.cloudy import (
    CASE_B_HA_HB,
    DEFAULT_CLOUDY_CONFIG,
    MODEL_COLUMNS,
    MODEL_LINES,
    delta_ratios,
    grid_from_cloudy_runs,
    grid_from_packaged,
    model_grid_spec,
    parse_line_list,
    project_line_intensities,
    unique_models,
    write_deck,
    write_line_list_file,
)

DATA = Path(__file__).parent / "data" / "cloudy"


@pytest.fixture(scope="module")
def models():
    return model_grid_spec()


def _model(models, r, law, variant="fiducial"):
    (m,) = [m for m in models if m["r_kpc"] == r and m["density_law"] == law and m["nh_variant"] == variant]
    return m


# ---------------------------------------------------------------------------
# model specification
# ---------------------------------------------------------------------------


def test_model_grid_spec_defaults(models):
    # 4 radii x 3 laws x 2 N/H variants; the 1 kpc slab is shared by both variants
    assert len(models) == 24
    assert len(unique_models(models)) == 21
    m = _model(models, 5.0, "r-1.5")
    assert m["name"] == "r05_r-1.5_nh-4.6"
    assert m["n_h"] == pytest.approx(100 * 5**-1.5)
    assert m["log_u"] == pytest.approx(-2.3 - 0.5 * np.log10(5))
    assert _model(models, 10.0, "const")["log_u"] == pytest.approx(-2.3 - 2 * np.log10(10))
    assert _model(models, 15.0, "r-2")["log_u"] == pytest.approx(-2.3)
    assert _model(models, 15.0, "r-2")["n_h"] == pytest.approx(100 / 15**2)
    # the low-N/H variant keeps log N/H = -4.6 at 1 kpc
    assert _model(models, 1.0, "const", "low_outer")["log_nh"] == -4.6
    assert _model(models, 1.0, "const", "low_outer")["name"] == "r01_const_nh-4.6"
    assert _model(models, 5.0, "const", "low_outer")["log_nh"] == -5.1
    assert _model(models, 5.0, "const", "low_outer")["name"] == "r05_const_nh-5.1"


def test_model_grid_spec_needs_reference_radius():
    with pytest.raises(ValueError, match="1 kpc"):
        model_grid_spec({"radii_kpc": [5, 10]})


def test_default_config_is_the_spec():
    assert DEFAULT_CLOUDY_CONFIG["radii_kpc"] == [1, 5, 10, 15]
    assert DEFAULT_CLOUDY_CONFIG["density_laws"] == {"const": 0.0, "r-1.5": -1.5, "r-2": -2.0}
    assert (DEFAULT_CLOUDY_CONFIG["log_oh"], DEFAULT_CLOUDY_CONFIG["log_nh"]) == (-3.6, -4.6)
    assert DEFAULT_CLOUDY_CONFIG["log_nh_outer"] == -5.1
    assert DEFAULT_CLOUDY_CONFIG["stop_column_h0"] == 1e22


# ---------------------------------------------------------------------------
# decks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "r, law, hden",
    [(1.0, "const", "hden 2.0000"), (5.0, "r-1.5", "hden 0.9515"), (10.0, "r-2", "hden 0.0000"), (15.0, "const", "hden 2.0000")],
)
def test_deck_density_radius(tmp_path, models, r, law, hden):
    m = _model(models, r, law)
    text = write_deck(m, tmp_path / f"{m['name']}.in").read_text()
    lines = text.splitlines()
    assert hden in lines
    # log10(r / cm), 1 kpc = 3.0857e21 cm
    assert f"radius {np.log10(r * 3.0856775814913673e21):.4f}" in lines
    # the same source in every deck: log Q(H) = -2.3 + log10(4 pi (1 kpc)^2 100 c) = 54.2547
    assert "Q(H) = 54.2547" in lines


def test_deck_abundances_stop_save(tmp_path, models):
    m = _model(models, 5.0, "const", "low_outer")
    lines = write_deck(m, tmp_path / "deck.in").read_text().splitlines()
    # metals 0.5 also scales O and N, so they are entered + log10(2)
    assert "metals 0.5 linear" in lines
    assert "element abundance oxygen -3.2990" in lines
    assert "element abundance nitrogen -4.7990" in lines
    assert "# log(O/H) = -3.60, log(N/H) = -5.10" in lines
    assert "stop neutral column density 22" in lines
    assert "iterate to convergence" in lines
    assert 'table SED "bpass_v2.2.1_constSFR_224Myr_halfsolar.sed"' in lines
    assert lines[-1] == 'save last line list "r05_const_nh-5.1.lines" "ismcgm_linelist.dat" absolute no hash'
    # every non-comment line is a command; comments sit on their own lines
    assert all(not ln.strip().startswith("//") for ln in lines)


def test_deck_luminosity_option(tmp_path):
    (m,) = [
        m
        for m in model_grid_spec({"luminosity": {"log_nu_lnu": 44.583, "at_ryd": 0.6075}, "radii_kpc": [1]})
        if m["density_law"] == "const" and m["nh_variant"] == "fiducial"
    ]
    lines = cloudy.deck_text(m).splitlines()
    assert "nuL(nu) = 44.5830 at 0.6075 Ryd" in lines
    assert not any(ln.startswith("Q(H)") for ln in lines)


def test_line_list_file_labels_are_parsed(tmp_path):
    path = write_line_list_file(tmp_path / "ll.dat")
    labels = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert "O  3 5006.84A" in labels and "C  2 157.636m" in labels
    raw = {lab: 1.0 for lab in labels}
    inten = project_line_intensities(raw)
    assert inten["OII3728"] == 2.0  # the doublet sum
    assert all(inten[line] == 1.0 for line in MODEL_LINES if line != "OII3728")


# ---------------------------------------------------------------------------
# Cloudy output
# ---------------------------------------------------------------------------


def test_parse_row_format_uses_last_iteration():
    raw = parse_line_list(DATA / "row_format.lines", DATA / "finished_run.out")
    assert raw["H  1 4861.33A"] == 1.0e38
    assert raw["C  2 157.636m"] == 5.0e37
    inten = project_line_intensities(raw)
    assert inten["OII3728"] == pytest.approx(2.5e38)
    assert inten["HA"] == pytest.approx(2.9e38)


def test_parse_column_format_vacuum_labels():
    inten = project_line_intensities(parse_line_list(DATA / "column_format_vacuum.lines"))
    assert inten["HB"] == pytest.approx(4.0e38)
    assert inten["HA"] == pytest.approx(1.16e39)
    # the two vacuum [O II] labels, not the 'Blnd 3727' blend
    assert inten["OII3728"] == pytest.approx(4.0e38)
    assert inten["NII6583"] == pytest.approx(1.2e38)
    assert np.isnan(inten["OIII4959"]) and np.isnan(inten["CII"])


def test_truncated_run_raises():
    with pytest.raises(ValueError, match="truncated_run.out.*did not finish; rerun it"):
        parse_line_list(DATA / "row_format.lines", DATA / "truncated_run.out")


def test_grid_from_cloudy_runs(models):
    sub = [_model(models, 1.0, "const"), _model(models, 5.0, "const")]
    paths = {sub[0]["name"]: DATA / "row_format.lines", sub[1]["name"]: DATA / "column_format_vacuum.lines"}
    df = grid_from_cloudy_runs(sub, paths, main_outputs=[DATA / "finished_run.out"] * 2)
    assert list(df.columns) == list(MODEL_COLUMNS) + list(MODEL_LINES)
    assert (df["grid_source"] == "cloudy").all()
    first = df.iloc[0]
    assert first["HB"] == 1.0
    assert first["HA"] == pytest.approx(2.9)
    assert first["OII3728"] == pytest.approx(2.5)
    assert first["OIII5007"] == pytest.approx(3.0)
    assert first["NII6583"] == pytest.approx(0.3)
    assert first["CII"] == pytest.approx(0.5)
    assert df.iloc[1]["OIII5007"] == pytest.approx(2.0)
    assert not df["missing"].any()


# ---------------------------------------------------------------------------
# packaged grids
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(models):
    return grid_from_packaged(models, "hcm_bpass")


def test_packaged_interpolation_at_1kpc(packaged):
    row = packaged[(packaged["r_kpc"] == 1.0) & (packaged["density_law"] == "const") & (packaged["nh_variant"] == "fiducial")].iloc[0]
    # HCm BPASS rows 12+log(O/H) = 8.4, log(N/O) = -1.0 at log U = -2.5 and -2.25;
    # log U = -2.3 lies 0.8 of the way to -2.25
    assert row["OIII5007"] == pytest.approx(0.2 * 4.9763 + 0.8 * 6.1719)
    assert row["OII3728"] == pytest.approx(0.2 * 2.0658 + 0.8 * 1.5012)
    assert row["NII6583"] == pytest.approx(0.2 * 0.2915 + 0.8 * 0.2000)
    assert row["OIII4959"] == pytest.approx(row["OIII5007"] / 3)
    assert row["NII6548"] == pytest.approx(row["NII6583"] / 3)
    # Calabro grid, log n = 2, Z = 0.0076 (12+log(O/H) = 8.364): Ha/Hb at -2.5 and -2.0
    assert row["HA"] == pytest.approx(0.6 * 279.827 / 100 + 0.4 * 279.572 / 100)
    assert row["halpha_source"] == "calabro2023"
    assert np.isnan(row["CII"])
    assert not row["missing"]


def test_packaged_low_nh_variant(packaged):
    row = packaged[(packaged["r_kpc"] == 5.0) & (packaged["density_law"] == "r-2") & (packaged["nh_variant"] == "low_outer")].iloc[0]
    assert row["log_nh"] == -5.1
    # log(N/O) = -1.5 node
    assert row["NII6583"] == pytest.approx(0.2 * 0.0944 + 0.8 * 0.0646)


def test_packaged_no_extrapolation(packaged):
    const = packaged[(packaged["density_law"] == "const") & (packaged["nh_variant"] == "fiducial")].set_index("r_kpc")
    # log U(5 kpc) = -3.70: inside the HCm range, outside Calabro's (-3 .. -1.5) -> Case B
    assert not const.loc[5.0, "missing"]
    assert const.loc[5.0, "HA"] == CASE_B_HA_HB
    assert const.loc[5.0, "halpha_source"] == "case_b"
    # log U(10 kpc) = -4.3 < -4.0: not extrapolated
    for r in (10.0, 15.0):
        assert const.loc[r, "missing"]
        assert const.loc[r, ["OIII5007", "OII3728", "NII6583", "HA"]].isna().all()


def test_packaged_rejects_off_node_abundance():
    ms = model_grid_spec({"log_oh": -3.65, "radii_kpc": [1]})
    with pytest.raises(ValueError, match="not a node"):
        grid_from_packaged(ms, "hcm_bpass")


def test_calabro_grid_has_no_nii(models):
    df = grid_from_packaged(models[:4], "calabro2023")
    assert df["NII6583"].isna().all()
    assert (df["grid_source"] == "calabro2023").all()
    # const law: log U(5 kpc) = -3.7 is below Calabro's -3.0
    assert df.set_index("r_kpc").loc[5.0, "missing"]


# ---------------------------------------------------------------------------
# Delta log(ratio)
# ---------------------------------------------------------------------------


def test_delta_ratios(packaged):
    d = delta_ratios(packaged)
    assert set(d["ratio"]) == {"O3", "O2", "O32", "R23", "N2", "N2O2"}
    ref = d[d["r_kpc"] == 1.0]
    assert np.allclose(ref["delta_log_ratio"], 0.0)
    # constant U: no change for the fiducial N/H
    r2 = d[(d["density_law"] == "r-2") & (d["nh_variant"] == "fiducial")]
    assert np.allclose(r2["delta_log_ratio"], 0.0)
    # N2O2 of the low-N/H variant at constant U (hand-computed from the grid rows)
    n2o2_fid = (0.2 * 0.2915 + 0.8 * 0.2000) / (0.2 * 2.0658 + 0.8 * 1.5012)
    n2o2_low = (0.2 * 0.0944 + 0.8 * 0.0646) / (0.2 * 2.1594 + 0.8 * 1.5631)
    low = d[(d["density_law"] == "r-2") & (d["nh_variant"] == "low_outer") & (d["ratio"] == "N2O2") & (d["r_kpc"] == 10.0)]
    assert low["delta_log_ratio"].iloc[0] == pytest.approx(np.log10(n2o2_low / n2o2_fid))
    # O32 falls outward for alpha > -2 (paper Sect. 5.2)
    o32 = d[(d["density_law"] == "r-1.5") & (d["nh_variant"] == "fiducial") & (d["ratio"] == "O32")].sort_values("r_kpc")
    assert np.all(np.diff(o32["delta_log_ratio"]) < 0)
    # missing models stay NaN
    gone = d[(d["density_law"] == "const") & (d["r_kpc"] == 10.0)]
    assert gone["missing"].all() and gone["delta_log_ratio"].isna().all()


def test_delta_ratios_r23_definition():
    row = {c: np.nan for c in MODEL_COLUMNS}
    base = dict(row, name="a", r_kpc=1.0, density_law="const", nh_variant="fiducial", missing=False, grid_source="x")
    lines1 = dict(HB=1.0, HA=2.86, OII3728=2.0, OIII4959=1.0, OIII5007=3.0, NII6548=0.1, NII6583=0.3, CII=np.nan)
    lines5 = dict(lines1, OIII4959=0.5, OIII5007=1.5)
    df = pd.DataFrame([base | lines1, base | {"name": "b", "r_kpc": 5.0} | lines5])
    d = delta_ratios(df).set_index(["ratio", "r_kpc"])["delta_log_ratio"]
    assert d[("R23", 5.0)] == pytest.approx(np.log10(4.0 / 6.0))
    assert d[("O32", 5.0)] == pytest.approx(np.log10(0.75 / 1.5))
    assert d[("N2", 5.0)] == pytest.approx(0.0)


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------


def test_fig5_fig7(tmp_path, packaged):
    from ismcgm.plots import fig5_cloudy

    d = delta_ratios(packaged)
    boxes = pd.DataFrame(
        {"ratio": ["O2", "O32", "N2O2"], "p16": [0.05, -0.3, -0.3], "p84": [0.25, -0.05, 0.05], "r_min": 4.0, "r_max": 9.0}
    )
    note = fig5_cloudy._missing_note(d[(d["ratio"] == "O3") & (d["nh_variant"] == "fiducial")])
    assert "const: r = 10, 15 kpc" in note
    fig5_cloudy.plot_fig5(d, boxes, tmp_path / "f5.pdf", tmp_path / "f5.png", synthetic=True)
    fig5_cloudy.plot_fig7(d, boxes, tmp_path / "f7.pdf", tmp_path / "f7.png", synthetic=False)
    for name in ("f5.pdf", "f5.png", "f7.pdf", "f7.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_write_all_decks(tmp_path, models):
    decks = cloudy.write_all_decks(models, tmp_path)
    assert len(decks) == 21
    assert (tmp_path / "ismcgm_linelist.dat").exists()
    assert all(p.suffix == ".in" and p.exists() for p in decks)


def test_paper_trends_with_radius():
    """Sect. 5.2.1 trends on the packaged grid (constant density: U falls as r^-2).

    Hold: O2 rises and O32 and O3 fall with r for the constant-density law;
    N2 rises with r; the r^-2 law keeps U, hence every ratio, constant.
    Not testable: the constant-density models beyond ~7 kpc fall below the
    grid's log U = -4 and are missing (never extrapolated).
    """
    models = cloudy.model_grid_spec()
    d = cloudy.delta_ratios(cloudy.grid_from_packaged(models))
    d = d[d["nh_variant"] == "fiducial"].set_index(["density_law", "r_kpc", "ratio"])["delta_log_ratio"]
    assert d[("const", 5, "O2")] > 0.1
    assert d[("const", 5, "O32")] < -0.5
    assert d[("const", 5, "O3")] < -0.5
    assert d[("const", 5, "N2")] > 0.1
    assert d[("r-1.5", 15, "O32")] < d[("r-1.5", 5, "O32")] < 0
    for r in (5, 10, 15):
        for ratio in ("O3", "O2", "O32", "N2"):
            assert d[("r-2", r, ratio)] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(d[("const", 10, "O2")])
