"""The setup registry (issue 16): LSFs from the packaged official curves, air/vacuum, the
MUSE reader, and what the workflow derives from the registry."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from astropy.io import fits

from ismcgm import instruments, io, mock, ratios, samples
from ismcgm.errors import InputError
from ismcgm.extract import flambda_factor

NIRSPEC = ("prism", "g140m", "g140h", "g235m", "g235h", "g395m", "g395h")


def _official(name):
    path = resources.files("ismcgm") / "data" / "nirspec" / f"jwst_nirspec_{name}_disp.fits"
    with fits.open(path) as hdul:
        return np.asarray(hdul[1].data["WAVELENGTH"], float), np.asarray(hdul[1].data["R"], float)


@pytest.mark.parametrize("name", NIRSPEC)
def test_nirspec_lsf_is_the_official_curve(name):
    """R at three wavelengths of each setup's range equals the packaged JDox table there."""
    setup = instruments.get_setup(name)
    wave, r = _official(name)
    inside = np.flatnonzero((wave > setup.wmin_um) & (wave < setup.wmax_um))
    for i in inside[[len(inside) // 10, len(inside) // 2, -len(inside) // 10]]:
        assert setup.resolving_power(wave[i]) == pytest.approx(r[i], rel=1e-6)
    # between two nodes: linear interpolation of the table
    i = inside[len(inside) // 3]
    mid = 0.5 * (wave[i] + wave[i + 1])
    assert setup.resolving_power(mid) == pytest.approx(0.5 * (r[i] + r[i + 1]), rel=1e-6)
    assert setup.lsf_sigma_kms(wave[i]) == pytest.approx(instruments.C_KMS / r[i] / 2.3548200450309493, rel=1e-6)


def test_official_curves_are_not_the_old_linear_approximation():
    """At 4 micron the JDox curves give G395M R = 1012.8 and G395H 2738.6 (the former linear laws: 1004, 2746)."""
    assert instruments.get_setup("g395m").resolving_power(4.0) == pytest.approx(1012.8, abs=1.0)
    assert instruments.get_setup("g395h").resolving_power(4.0) == pytest.approx(2738.6, abs=1.0)


def test_muse_lsf_bacon2017():
    """MUSE WFM: FWHM(lambda) = 5.866e-8 l^2 - 9.187e-4 l + 6.040 A (Bacon et al. 2017, eq. 8)."""
    muse = instruments.get_setup("muse")
    for lam in (4800.0, 7000.0, 9300.0):
        fwhm = 5.866e-8 * lam**2 - 9.187e-4 * lam + 6.040
        assert muse.resolving_power(lam * 1e-4) == pytest.approx(lam / fwhm, rel=1e-12)
    assert 1500 < muse.resolving_power(0.48) < 1700 and 3500 < muse.resolving_power(0.93) < 3700


def test_air_vacuum():
    """Halpha: 6562.80 A in air is 6564.61 A in vacuum; the two conversions invert each other."""
    assert instruments.air_to_vacuum_um(0.656280) * 1e4 == pytest.approx(6564.61, abs=0.01)
    w = np.linspace(0.47, 0.94, 50)
    np.testing.assert_allclose(instruments.vacuum_to_air_um(instruments.air_to_vacuum_um(w)), w, atol=1e-9)


def test_registry_derivations():
    """Columns, preference, wildcard and overlap names come from the registry (today's values kept)."""
    assert ratios.GRATING_PREFERENCE[:4] == ("combined", "g395m", "g395h", "g235m")
    assert set(instruments.wildcard_pattern().split("|")) == set(instruments.SETUPS)
    assert {f"cube_{s}" for s in instruments.SETUPS} <= set(samples.OPTIONAL_SAMPLE_COLUMNS)
    row = {"cube_g235m": "a", "cube_g395h": "b", "cube_g395m": ""}
    assert samples.galaxy_gratings(row) == ["g235m", "g395h"]
    assert samples.reference_grating(row) == "g395h"
    assert samples.reference_grating({"cube_muse": "m"}) == "muse"


def _table(**cols):
    import pandas as pd

    base = dict(id="g1", z=0.35, logmstar=10.0, ra=150.0, dec=2.0, image="i.fits", image_filter="F814W",
                image_psf_fwhm=0.1, ifu_psf_fwhm=0.6, merger=False)
    return pd.DataFrame([{**base, **cols}])


def test_sample_table_setups():
    """A MUSE-only row is valid; no cube, or two setups of one band, are one-line errors."""
    assert samples.galaxy_gratings(samples.check_sample_table(_table(cube_muse="m.fits")).iloc[0]) == ["muse"]
    with pytest.raises(InputError, match="no cube given"):
        samples.check_sample_table(_table())
    with pytest.raises(InputError, match="both cube_g235m and cube_g235h"):
        samples.check_sample_table(_table(cube_g235m="a", cube_g235h="b"))


@pytest.fixture(scope="module")
def muse_plan():
    cfg = {"seed": 3, "n_galaxies": 2, "ifu_npix": 15, "merger_fraction": 0.0, "noise_scale": 1.0,
           "instrument": "muse", "geometry": "compact", "scatter_dex": 0.05, "ebv_gas": {"ISM": [0.05, 0.4]},
           "cgm_minus_ism_dex": {"O3": 0.0, "O2": 0.0, "N2": 0.0, "CII_HA": 0.0, "BALMER": 0.0}}
    return mock.plan_survey(cfg)[0]


def test_muse_mock_cube_reads_back(tmp_path, muse_plan):
    """The MUSE mock (DATA/STAT, 1e-20 erg/s/cm2/A, AWAV) reads back in vacuum with the injected flux."""
    assert 0.3 <= muse_plan["z"] <= 0.4 and muse_plan["ifu"]["gratings"] == ["muse"]
    path = tmp_path / "m_muse_cube.fits"
    mock.write_cube(muse_plan, "muse", path)
    with fits.open(path) as hdul:
        assert hdul[0].header["INSTRUME"] == "MUSE" and hdul["DATA"].header["CTYPE3"] == "AWAV"
        data = hdul["DATA"].data.astype(float)
        stat = hdul["STAT"].data.astype(float)
    cube = io.read_cube(path, "m")
    muse = instruments.get_setup("muse")
    np.testing.assert_allclose(cube.wave_um, instruments.air_to_vacuum_um(muse.wavelength_grid()), rtol=1e-12)
    back = cube.sci * flambda_factor(cube.wave_um, cube.pixar_sr)[:, None, None]
    good = np.isfinite(data)
    np.testing.assert_allclose(back[good], data[good] * 1e-20, rtol=2e-6, atol=1e-30)
    err = cube.err * flambda_factor(cube.wave_um, cube.pixar_sr)[:, None, None]
    np.testing.assert_allclose(err[good], np.sqrt(stat[good]) * 1e-20, rtol=2e-6)
    # the noiseless Halpha flux of the cube: the truth, at its vacuum wavelength
    _, _, wave = mock.noiseless_cube(muse_plan, "muse", flambda=True)
    lam = 6564.61 * (1 + muse_plan["z"]) * 1e-4
    win = np.abs(wave - lam) < 0.003
    prof = mock.line_profiles(muse_plan, muse, wave)["HA"]
    edges = instruments.air_to_vacuum_um(np.r_[muse.wavelength_grid() - muse.dlam_um / 2,
                                               muse.wavelength_grid()[-1] + muse.dlam_um / 2]) * 1e4
    assert np.sum(prof[win] * np.diff(edges)[win]) == pytest.approx(1.0, abs=1e-3)


def test_muse_reader_rejects_wrong_unit(tmp_path, muse_plan):
    path = tmp_path / "m_muse_cube.fits"
    mock.write_cube(muse_plan, "muse", path)
    with fits.open(path, mode="update") as hdul:
        hdul["DATA"].header["BUNIT"] = "MJy/sr"
    with pytest.raises(InputError, match="DATA has BUNIT='MJy/sr'"):
        io.read_cube(path, "m")


def test_line_list_default_is_the_constants():
    """The schema default of ``lines`` is instrument.py's list; applying it changes nothing."""
    import copy
    from pathlib import Path

    import yaml

    from ismcgm import instrument as ins

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas"
                             / "config.schema.yaml").read_text())
    default = schema["properties"]["lines"]["default"]
    assert default == ins.line_list()
    before = copy.deepcopy((ins.TRANSITIONS, ins.LINES, ins.TIED_RATIOS, ins.LINE_WAVELENGTHS))
    ins.use_lines(default)
    assert (ins.TRANSITIONS, ins.LINES, ins.TIED_RATIOS, ins.LINE_WAVELENGTHS) == before
    assert list(ins.LINES) == list(before[1])


def test_line_list_from_config_is_used():
    """An added line ([O III]4363) is fitted where it falls; a list without Halpha is refused."""
    from ismcgm import instrument as ins

    default = ins.line_list()
    try:
        ins.use_lines({"OII3728": default["OII3728"], "OIII4363": {"transitions": {"OIII4363": 4364.436}},
                       **{k: v for k, v in default.items() if k != "OII3728"}})
        assert "OIII4363" in ins.lines_in_grating("g235m", 4.5)
        assert ins.LINE_WAVELENGTHS["OIII4363"] == 4364.436
        assert "tied" not in ins.line_list()["OIII4363"]
        with pytest.raises(ValueError, match="lacks HA"):
            ins.use_lines({k: v for k, v in default.items() if k != "HA"})
        with pytest.raises(ValueError, match="must be another, untied line"):
            ins.use_lines({**default, "HB": {"transitions": {"HB": 4862.683}, "tied": {"to": "NOPE", "ratio": 1}}})
    finally:
        ins.use_lines(default)
    assert "OIII4363" not in ins.LINES


def test_muse_header_checks(tmp_path, muse_plan):
    """A MUSE cube in cube_muse passes the parse-time header checks; a NIRSpec cube there is named."""
    from ismcgm import inputcheck

    row = mock.sample_rows([muse_plan], root=str(tmp_path))[0]
    (tmp_path / muse_plan["id"]).mkdir()
    mock.write_cube(muse_plan, "muse", row["cube_muse"])
    mock.write_image(muse_plan, row["image"])
    assert row["alma_cube"] == "" and row["image_filter"] == "F814W"
    assert inputcheck.check_row(row["id"], row, "samples.tsv") == []
    with fits.open(row["cube_muse"], mode="update") as hdul:
        hdul[0].header["INSTRUME"] = "NIRSPEC"
    with pytest.raises(InputError, match="INSTRUME = 'NIRSPEC', not a MUSE cube"):
        inputcheck.check_row(row["id"], row, "samples.tsv")
