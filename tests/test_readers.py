"""Readers for the files people have (issue 16, items 3-5).

The SYNTHETIC mock's own files are rewritten the way other software writes
the same data (``tests/outside_files.py``: ``stdatamodels`` IFUCubeModel and
ImageModel, an HST ``_drz`` or single-HDU mosaic in electrons/s, a CASA-style
4-D ALMA cube, cubes stored in descending wavelength/frequency); each must
read as the same data and give the same masks as the mock file.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from ismcgm import cii, masks, mock
from ismcgm.align import align
from ismcgm.errors import InputError
from ismcgm.io import image_unit_factor, read_cube, read_image, read_table
from ismcgm.maskio import shifted_wcs
from tests import outside_files as of
from tests.conftest import run_snakemake


@pytest.fixture(scope="module")
def hst_galaxy(tmp_path_factory, test_mock_cfg):
    """The test config's F125W galaxy (mock04): its mock files and sample row."""
    plan = next(p for p in mock.plan_survey(test_mock_cfg) if p["image"]["filter"] == "F125W")
    root = tmp_path_factory.mktemp("hst")
    row = mock.sample_rows([plan], root=str(root))[0]
    (root / plan["id"]).mkdir()
    for g in plan["ifu"]["gratings"]:
        mock.write_cube(plan, g, row[f"cube_{g}"])
    mock.write_image(plan, row["image"])
    mock.write_alma(plan, row["alma_cube"])
    return plan, row, root


def _masks(row, image, cubes, alma):
    shift = align(cubes, image, row)
    aligned = shifted_wcs(cubes[0].wcs, shift.shift_ra_arcsec, shift.shift_dec_arcsec)
    return shift, masks.make_masks(image, cubes[0], aligned, row, {}, alma=alma)


# ---------------------------------------------------------------------------
# continuum images: HST counts, flux units, ImageModel
# ---------------------------------------------------------------------------
def test_hst_electrons_per_second_give_the_mjysr_masks(hst_galaxy, tmp_path):
    """F125W in e-/s (a _drz SCI/WHT/CTX and a single-HDU mosaic) reads as the MJy/sr image and gives its masks."""
    plan, row, _ = hst_galaxy
    own = read_image(row["image"], plan["id"])
    cubes = [read_cube(row[f"cube_{g}"], plan["id"]) for g in plan["ifu"]["gratings"]]
    alma = cii.read_alma_cube(row["alma_cube"], plan["id"])
    ref_shift, ref = _masks(row, own, cubes, alma)
    variants = {"drz": {}, "single": dict(layout="single"), "photflam": dict(photometry=("PHOTFLAM", "PHOTPLAM")),
                "counts": dict(counts=True)}
    for name, kw in variants.items():
        path = tmp_path / f"{name}_drz.fits"
        written = of.hst_counts_image(row["image"], path, **kw)
        with fits.open(path) as hdul:
            sci = hdul["SCI"] if "SCI" in hdul else hdul[0]
            assert sci.header["BUNIT"].startswith("ELECTRONS") and sci.data.dtype.str[1:] == "f4"
            cd = np.array([[sci.header["CD1_1"], sci.header["CD1_2"]], [sci.header["CD2_1"], sci.header["CD2_2"]]])
        # MJy/sr per e-/s by hand: PHOTFNU [Jy s] x 1e-6 / (|det CD| deg2 in sr)
        by_hand = of.F125W_PHOTFNU * 1e-6 / (abs(np.linalg.det(cd)) * (np.pi / 180.0) ** 2)
        assert written == pytest.approx(by_hand, rel=1e-12)
        image = read_image(path, plan["id"])
        expect = by_hand / (of.F125W_EXPTIME if name == "counts" else 1.0)
        assert image.to_mjysr == pytest.approx(expect, rel=1e-12)
        np.testing.assert_allclose(image.data, own.data, rtol=2e-7, atol=0)  # float32 e-/s round trip
        shift, result = _masks(row, image, cubes, alma)
        for region, m in ref["regions"].items():
            assert np.array_equal(result["regions"][region], m), (name, region)
        assert shift.shift_ra_arcsec == pytest.approx(ref_shift.shift_ra_arcsec, abs=1e-5)
        assert shift.shift_dec_arcsec == pytest.approx(ref_shift.shift_dec_arcsec, abs=1e-5)


@pytest.mark.parametrize("bunit, factor", [
    ("MJy/sr", 1.0),
    ("uJy/arcsec2", 1e-12 / (np.pi / 180 / 3600) ** 2),
    ("nJy", "per pixel"),
    ("10*nJy", "10 per pixel"),
])
def test_image_flux_units(bunit, factor):
    hdr = fits.Header({"BUNIT": bunit, "PIXAR_SR": 2.5e-13})
    if factor == "per pixel":
        factor = 1e-9 * 1e-6 / 2.5e-13
    elif factor == "10 per pixel":
        factor = 10 * 1e-9 * 1e-6 / 2.5e-13
    assert image_unit_factor("g", "f.fits", hdr) == pytest.approx(factor, rel=1e-12)


def test_image_flambda_needs_a_wavelength():
    hdr = fits.Header({"BUNIT": "erg/s/cm2/Angstrom", "PIXAR_SR": 2.5e-13})
    with pytest.raises(InputError) as err:
        image_unit_factor("g", "f.fits", hdr)
    assert "PHOTPLAM" in str(err.value) and "\n" not in str(err.value)
    hdr["PHOTPLAM"] = 12486.07
    fnu_jy = 1.0 * (12486.07e-8) ** 2 / 2.99792458e10 * 1e23 * 1e8  # 1 erg/s/cm2/A at 12486 A, in Jy
    assert image_unit_factor("g", "f.fits", hdr) == pytest.approx(fnu_jy * 1e-6 / 2.5e-13, rel=1e-9)


@pytest.mark.parametrize("cards, words", [
    ({"BUNIT": "ELECTRONS/S"}, ["PHOTFNU", "PHOTFLAM", "ELECTRONS/S"]),
    ({"BUNIT": "ELECTRONS", "PHOTFNU": 1e-7}, ["EXPTIME"]),
    ({"BUNIT": "furlong"}, ["furlong", "BUNIT"]),
    ({"BUNIT": "K"}, ["'K'", "MJy/sr"]),
    ({}, ["BUNIT=None"]),
])
def test_image_unit_errors_are_one_line(cards, words):
    with pytest.raises(InputError) as err:
        image_unit_factor("gal1", "gal1_drz.fits", fits.Header(cards))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("galaxy gal1: gal1_drz.fits:") and "-- fix:" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_imagemodel_i2d_reads_as_the_mock_image(test_mock_cfg, tmp_path):
    """A NIRCam _i2d saved through stdatamodels' ImageModel (PC1_1 = -1, CDELT1 > 0, CON/WHT/VAR_*)."""
    plan = next(p for p in mock.plan_survey(test_mock_cfg) if p["image"]["filter"] == "F277W")
    row = {"image": tmp_path / "mock_i2d.fits"}
    mock.write_image(plan, row["image"])
    path = tmp_path / "x_i2d.fits"
    of.image_model(row["image"], path)
    with fits.open(path) as hdul:
        assert {"SCI", "ERR", "WHT", "CON", "VAR_RNOISE", "ASDF"} <= {h.name for h in hdul}
        assert hdul["SCI"].header["PC1_1"] == -1 and hdul["SCI"].header["CDELT1"] > 0
    own, other = read_image(row["image"]), read_image(path)
    assert np.array_equal(own.data, other.data) and other.to_mjysr == 1.0
    yy, xx = np.mgrid[0:own.data.shape[0]:7, 0:own.data.shape[1]:7]
    np.testing.assert_array_equal(own.wcs.pixel_to_world_values(xx, yy), other.wcs.pixel_to_world_values(xx, yy))


# ---------------------------------------------------------------------------
# cubes: IFUCubeModel, canonical order, CASA-style ALMA
# ---------------------------------------------------------------------------
def _same_cube(a, b, wave_rtol=0.0):
    for k in ("sci", "err", "dq"):
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k
    np.testing.assert_allclose(b.wave_um, a.wave_um, rtol=wave_rtol, atol=0)
    assert a.pixar_sr == b.pixar_sr
    yy, xx = np.mgrid[0:25:4, 0:25:4]
    np.testing.assert_array_equal(a.wcs.pixel_to_world_values(xx, yy), b.wcs.pixel_to_world_values(xx, yy))


def test_ifucubemodel_and_flipped_cubes_read_as_the_mock(hst_galaxy, tmp_path):
    """IFUCubeModel (ASDF, WMAP, PC matrix) reads bit for bit as the mock cube; a cube stored in descending
    wavelength comes back in ascending order (data bit for bit, wavelengths to the last bit of its header)."""
    plan, row, _ = hst_galaxy
    for g in plan["ifu"]["gratings"]:
        own = read_cube(row[f"cube_{g}"], plan["id"])
        assert np.all(np.diff(own.wave_um) > 0)
        model = tmp_path / f"model_{g}_s3d.fits"
        of.ifucube_model(row[f"cube_{g}"], model)
        with fits.open(model) as hdul:
            assert {"SCI", "ERR", "DQ", "WMAP", "ASDF"} <= {h.name for h in hdul}
            assert hdul["SCI"].header["PC1_1"] == -1 and hdul["SCI"].header["CDELT1"] > 0
        _same_cube(own, read_cube(model, plan["id"]))
        for exact, rtol in ((True, 0.0), (False, 1e-15)):  # CRPIX3 moved / CRVAL3 rewritten (1-ulp channels)
            flipped = tmp_path / f"flipped_{g}_{exact}_s3d.fits"
            of.flipped_cube(row[f"cube_{g}"], flipped, exact_grid=exact)
            assert fits.getheader(flipped, "SCI")["CDELT3"] < 0
            _same_cube(own, read_cube(flipped, plan["id"]), wave_rtol=rtol)


def test_descending_and_casa_alma_cubes_read_as_the_mock(hst_galaxy, tmp_path):
    plan, row, _ = hst_galaxy
    own = cii.read_alma_cube(row["alma_cube"], plan["id"])
    desc, casa = tmp_path / "desc.fits", tmp_path / "casa.fits"
    of.descending_alma_cube(row["alma_cube"], desc)
    of.casa_alma_cube(row["alma_cube"], casa)
    with fits.open(casa) as hdul:
        h = hdul[0].header
        assert h["NAXIS"] == 4 and h["CTYPE4"] == "STOKES" and h["CTYPE1"] == "RA---SIN" and h["CDELT3"] < 0
        assert "BMAJ" not in h and len(hdul["BEAMS"].data) == own.data.shape[0]
    for path in (desc, casa):
        other = cii.read_alma_cube(path, plan["id"])
        assert np.array_equal(own.data, other.data, equal_nan=True)
        np.testing.assert_allclose(other.freq_hz, own.freq_hz, rtol=1e-15, atol=0)
        np.testing.assert_allclose(other.beam, own.beam, rtol=1e-7)  # CASA's BEAMS are 32-bit floats
        assert other.pixscale == pytest.approx(own.pixscale, rel=1e-12)
        yy, xx = np.mgrid[0:own.data.shape[1]:9, 0:own.data.shape[2]:9]
        np.testing.assert_allclose(other.wcs.pixel_to_world_values(xx, yy), own.wcs.pixel_to_world_values(xx, yy),
                                   rtol=0, atol=1e-11)  # SIN vs TAN: < 1e-11 deg over the field
    assert np.array_equal(cii.read_alma_cube(desc).freq_hz, own.freq_hz)


def test_alma_cube_with_several_stokes_uses_stokes_i(hst_galaxy, tmp_path):
    plan, row, _ = hst_galaxy
    casa = tmp_path / "casa.fits"
    of.casa_alma_cube(row["alma_cube"], casa)
    with fits.open(casa) as hdul:
        i = hdul[0].data
        hdul[0].data = np.concatenate([i, np.zeros_like(i)])  # I, Q
        beams = hdul["BEAMS"].data
        q = beams.copy()
        q["POL"] = 1
        table = fits.BinTableHDU(np.concatenate([beams, q]), header=hdul["BEAMS"].header, name="BEAMS")
        table.header["NPOL"] = 2  # CASA: one beam per channel and polarisation
        fits.HDUList([hdul[0], table]).writeto(tmp_path / "iq.fits")
    a, b = cii.read_alma_cube(casa), cii.read_alma_cube(tmp_path / "iq.fits")
    assert np.array_equal(a.data, b.data, equal_nan=True)
    assert WCS(fits.getheader(tmp_path / "iq.fits")).naxis == 4


# ---------------------------------------------------------------------------
# end to end: one galaxy's files replaced in a run of the test config
# ---------------------------------------------------------------------------
GALAXY = "mock04"  # the test config's F125W galaxy (non-merger, G235M + G395M, ALMA)
#: The mock files that the reruns below start from: mock04's products (one mock_galaxy_* job) and the tables.
MOCK_FILES = ("results/mock/samples.tsv", "results/mock/truth.json") + tuple(
    f"results/mock/{GALAXY}/{GALAXY}_{name}.fits"
    for name in ("g235m_s3d", "g395m_s3d", "truth", "f125w_i2d", "cii_cube"))


def galaxy_outputs(run):
    """mock04's per-galaxy outputs of a finished run, relative to it: alignment, masks, spectra, MC chunks, [C II]."""
    res = Path(run) / "results"
    paths = [res / f"alignment/{GALAXY}.csv", res / f"masks/default/{GALAXY}.fits", res / f"cii/default/{GALAXY}.csv",
             res / f"cii/default/{GALAXY}_realisations.parquet"]
    paths += sorted(res.glob(f"mc/default/chunks/{GALAXY}_*.parquet")) + sorted(res.glob(f"spectra/default/{GALAXY}_*"))
    return [str(p.relative_to(run)) for p in paths]


def rerun_with(workdir, reference, replacements):
    """Make the test config's mock files, rewrite mock04's with ``replacements`` ({file name: writer}), then make
    mock04's per-galaxy outputs of ``reference``; returns their relative paths."""
    run_snakemake(workdir, "--cores", "2", *MOCK_FILES)
    d = Path(workdir) / "results/mock" / GALAXY
    for name, writer in replacements.items():
        orig = d / f"{name}.orig"
        (d / name).rename(orig)
        writer(orig, d / name)
    targets = galaxy_outputs(reference)
    run_snakemake(workdir, "--cores", "2", *targets)
    return targets


@pytest.mark.e2e
def test_flipped_axes_give_byte_identical_results(e2e, tmp_path):
    """NIRSpec cubes in descending wavelength and an ALMA cube in descending frequency: every per-galaxy table
    (alignment, [C II] fluxes) and Monte Carlo chunk of mock04 is byte for byte the original run's.

    The cubes' grids are the original's bit for bit (``exact_grid``): a flipped header that rewrites CRVAL3 moves
    some channels by 1 ulp, which reaches the chunks at 1e-12 (the README's "Input files" gives the measurement).
    """
    repl = {f"{GALAXY}_{g}_s3d.fits": partial(of.flipped_cube, exact_grid=True) for g in ("g235m", "g395m")}
    repl[f"{GALAXY}_cii_cube.fits"] = of.descending_alma_cube
    targets = rerun_with(tmp_path, e2e, repl)
    compared = [t for t in targets if t.endswith((".csv", ".parquet"))]
    assert any("chunks" in t for t in compared) and any(t.endswith(f"cii/default/{GALAXY}.csv") for t in compared)
    for t in compared:
        assert (tmp_path / t).read_bytes() == (e2e / t).read_bytes(), t


@pytest.mark.e2e
def test_outside_library_files_give_the_mock_results(e2e, tmp_path):
    """IFUCubeModel cubes, an HST _drz in e-/s and a CASA-style 4-D ALMA cube (SIN, STOKES, BEAMS, descending
    frequency) in place of mock04's files: the same masks, and line fluxes and [C II] to float precision."""
    import pandas as pd

    repl = {f"{GALAXY}_{g}_s3d.fits": of.ifucube_model for g in ("g235m", "g395m")}
    repl[f"{GALAXY}_cii_cube.fits"] = of.casa_alma_cube
    repl[f"{GALAXY}_f125w_i2d.fits"] = of.hst_counts_image
    targets = rerun_with(tmp_path, e2e, repl)
    mask = next(t for t in targets if t.startswith("results/masks/"))
    with fits.open(tmp_path / mask) as new, fits.open(e2e / mask) as old:
        names = old[0].header["REGIONS"].split(",")
        assert names == new[0].header["REGIONS"].split(",") and "ISM" in names
        for name in names:
            assert np.array_equal(new[name].data, old[name].data), name
    for t in targets:
        if t.endswith(".parquet"):
            a, b = pd.read_parquet(tmp_path / t), pd.read_parquet(e2e / t)
            pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=0)
    cii_new = read_table(tmp_path / f"results/cii/default/{GALAXY}.csv")
    cii_old = read_table(e2e / f"results/cii/default/{GALAXY}.csv")
    pd.testing.assert_frame_equal(cii_new, cii_old, check_exact=False, rtol=1e-5)
