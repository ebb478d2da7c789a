"""Tests of ismcgm.extract: exact sums, unit conversion, NaN handling, grids, I/O."""

from __future__ import annotations

import numpy as np
import pytest
import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from ismcgm import wcsutil
from ismcgm import extract, io

RA0, DEC0 = 210.3, -1.7
PIX = 0.1
C_A_PER_S = 2.99792458e18  # speed of light [Angstrom/s]


def _wcs3(ra, dec, nx, ny, w0, dw, crpix=None):
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN", "WAVE"]
    w.wcs.cunit = ["deg", "deg", "um"]
    w.wcs.crval = [ra, dec, w0]
    w.wcs.crpix = list(crpix or ((nx + 1) / 2.0, (ny + 1) / 2.0)) + [1.0]
    w.wcs.cdelt = [-PIX / 3600.0, PIX / 3600.0, dw]
    return w


def write_cube(path, sci, err, wcs3, pixar=True):
    h = wcs3.to_header()
    if pixar:
        h["PIXAR_SR"] = ((PIX * u.arcsec) ** 2).to_value(u.sr)
    hs = h.copy()
    hs["BUNIT"] = "MJy/sr"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, header=hs, name="SCI"),
                  fits.ImageHDU(err, header=hs, name="ERR")]).writeto(path)
    return path


@pytest.fixture()
def cube(tmp_path):
    rng = np.random.default_rng(3)
    nw, ny, nx = 40, 9, 11
    sci = rng.normal(1.0, 0.5, (nw, ny, nx))
    err = rng.uniform(0.1, 0.3, (nw, ny, nx))
    path = write_cube(tmp_path / "g_s3d.fits", sci, err, _wcs3(RA0, DEC0, nx, ny, 3.0, 0.002))
    return io.read_cube(path, "synthX")


def _expected(sci, err, mask, wave_um, pixar):
    """Analytic F_lambda: MJy/sr * sr -> 1e-17 erg/s/cm2/Hz -> * c / lambda^2."""
    lam_A = wave_um * 1e4
    fac = pixar * 1e-17 * C_A_PER_S / lam_A**2
    return sci[:, mask].sum(axis=1) * fac, np.sqrt((err[:, mask] ** 2).sum(axis=1)) * fac


def test_flambda_factor_analytic():
    wave = np.array([2.0, 3.5, 5.0])
    f = extract.flambda_factor(wave, 2.35e-13)
    assert np.allclose(f, 2.35e-13 * 1e-17 * C_A_PER_S / (wave * 1e4) ** 2, rtol=1e-12, atol=0)


def test_extract_equals_analytic_sum(cube):
    mask = np.zeros(cube.sci.shape[1:], bool)
    mask[3:6, 2:8] = True
    wave, flux, err = extract.extract_spectrum(cube, mask)
    ef, ee = _expected(cube.sci, cube.err, mask, cube.wave_um, cube.pixar_sr)
    assert np.allclose(wave, 3.0 + 0.002 * np.arange(40), rtol=0, atol=1e-12)
    assert np.allclose(flux, ef, rtol=1e-12, atol=0)
    assert np.allclose(err, ee, rtol=1e-12, atol=0)


def test_nan_spaxels_excluded_not_zeroed(cube):
    mask = np.zeros(cube.sci.shape[1:], bool)
    mask[4, 4:7] = True
    cube.sci[5, 4, 5] = np.nan  # one spaxel NaN in channel 5
    cube.err[5, 4, 5] = np.nan
    cube.sci[7, 4, 4:7] = np.nan  # every mask spaxel NaN in channel 7
    cube.err[7, 4, 4:7] = np.nan
    wave, flux, err = extract.extract_spectrum(cube, mask)
    fac = extract.flambda_factor(wave, cube.pixar_sr)
    assert flux[5] == pytest.approx((cube.sci[5, 4, 4] + cube.sci[5, 4, 6]) * fac[5], rel=1e-12)
    assert err[5] == pytest.approx(np.hypot(cube.err[5, 4, 4], cube.err[5, 4, 6]) * fac[5], rel=1e-12)
    assert np.isnan(flux[7]) and np.isnan(err[7])
    assert np.all(np.isfinite(np.delete(flux, 7)))


def test_region_spectra_matches_single(cube):
    m1 = np.zeros(cube.sci.shape[1:], bool)
    m1[1:4, 1:4] = True
    m2 = np.zeros_like(m1)
    m2[5:8, 5:9] = True
    out = extract.region_spectra(cube, {"ISM": m1, "CGM": m2})
    for name, m in (("ISM", m1), ("CGM", m2)):
        w, f, e, n = out[name]
        w1, f1, e1 = extract.extract_spectrum(cube, m)
        assert n == m.sum()
        assert np.array_equal(f, f1) and np.array_equal(e, e1)


def test_aligned_wcs_on_same_grid_is_identity(cube):
    """A mask on the aligned grid of the same cube is used as it is (no shift)."""
    mask = np.zeros(cube.sci.shape[1:], bool)
    mask[2:5, 3:6] = True
    aligned = wcsutil.shifted_wcs(cube.wcs, 0.137, -0.081)
    _, f, _ = extract.extract_spectrum(cube, mask, mask_wcs=aligned, cube_wcs=aligned)
    _, f0, _ = extract.extract_spectrum(cube, mask)
    assert np.array_equal(f, f0)


def test_mask_carried_to_other_grid_selects_same_sky(tmp_path):
    """A cube on a grid offset by (3, -2) spaxels and of another size selects the same sky spaxels
    and, holding the same sky data, gives the same spectrum."""
    rng = np.random.default_rng(5)
    nw, ny, nx = 12, 14, 16
    sky = rng.normal(2.0, 1.0, (nw, 30, 30))
    skyerr = rng.uniform(0.1, 0.2, (nw, 30, 30))
    # grid 1: pixels (10:24, 8:24) of the big sky array; grid 2: shifted by (dx, dy) = (3, -2)
    y1, x1, y2, x2 = 8, 6, 6, 9
    ny2, nx2 = 12, 18
    w1 = _wcs3(RA0, DEC0, nx, ny, 4.0, 0.003, crpix=(1.0, 1.0))
    # reference pixel (1,1) of grid 2 is sky pixel (x2, y2); grid 1's is (x1, y1)
    ref2 = w1.celestial.pixel_to_world_values(x2 - x1, y2 - y1)
    w2 = _wcs3(float(ref2[0]), float(ref2[1]), nx2, ny2, 4.0, 0.003, crpix=(1.0, 1.0))
    p1 = write_cube(tmp_path / "a_s3d.fits", sky[:, y1:y1 + ny, x1:x1 + nx], skyerr[:, y1:y1 + ny, x1:x1 + nx], w1)
    p2 = write_cube(tmp_path / "b_s3d.fits", sky[:, y2:y2 + ny2, x2:x2 + nx2], skyerr[:, y2:y2 + ny2, x2:x2 + nx2], w2)
    c1, c2 = io.read_cube(p1, "synthY"), io.read_cube(p2, "synthY")
    mask = np.zeros((ny, nx), bool)
    mask[4:9, 5:12] = True
    mask[6, 3] = True
    carried = extract.carry_mask(mask, c1.wcs, c2.wcs, c2.sci.shape[1:])
    assert carried.sum() == mask.sum()
    s1 = SkyCoord(*c1.wcs.pixel_to_world_values(*np.nonzero(mask)[::-1]), unit="deg")
    s2 = SkyCoord(*c2.wcs.pixel_to_world_values(*np.nonzero(carried)[::-1]), unit="deg")
    idx, sep, _ = s1.match_to_catalog_sky(s2)
    assert np.all(sep.to_value(u.arcsec) < 1e-6) and len(set(idx)) == len(s1)
    _, fa, ea = extract.extract_spectrum(c1, mask)
    _, fb, eb = extract.extract_spectrum(c2, mask, mask_wcs=c1.wcs)
    assert np.allclose(fa, fb, rtol=1e-12, atol=0) and np.allclose(ea, eb, rtol=1e-12, atol=0)
    # with a common alignment shift applied to both grids the selection is unchanged
    a1, a2 = wcsutil.shifted_wcs(c1.wcs, 0.12, 0.05), wcsutil.shifted_wcs(c2.wcs, 0.12, 0.05)
    _, fc, _ = extract.extract_spectrum(c2, mask, mask_wcs=a1, cube_wcs=a2)
    assert np.allclose(fa, fc, rtol=1e-12, atol=0)


def test_pixar_from_wcs_when_missing(tmp_path):
    sci = np.ones((5, 4, 4))
    p = write_cube(tmp_path / "c_s3d.fits", sci, sci * 0.1, _wcs3(RA0, DEC0, 4, 4, 3.0, 0.01), pixar=False)
    c = io.read_cube(p, "synthZ")
    assert c.pixar_sr == pytest.approx(((PIX * u.arcsec) ** 2).to_value(u.sr), rel=1e-6)


def test_write_read_spectrum(tmp_path, cube):
    mask = np.zeros(cube.sci.shape[1:], bool)
    mask[2:4, 2:4] = True
    wave, flux, err = extract.extract_spectrum(cube, mask)
    meta = {"ID": "synthX", "COMPONENT": "a", "REGION": "CGM", "GRATING": "G395M", "Z": 5.1,
            "VARIANT": "default", "NSPAX": np.int64(4)}
    path = tmp_path / "synthX_CGM_g395m.fits"
    extract.write_spectrum(path, wave, flux, err, meta)
    spec = extract.read_spectrum(path)
    assert np.array_equal(spec.wave_um, wave) and np.array_equal(spec.flux, flux) and np.array_equal(spec.err, err)
    assert spec.meta == meta
    with fits.open(path) as h:
        hdr = h[1].header
        units = {hdr[f"TTYPE{i}"]: u.Unit(hdr[f"TUNIT{i}"]) for i in (1, 2, 3)}
    assert units["wavelength"] == u.um
    assert units["flux"] == units["err"] == u.erg / u.s / u.cm**2 / u.AA
