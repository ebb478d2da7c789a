"""Tests of ismcgm.masks: alignment, ISM/CGM masks, exclusion regions, errors.

Every test builds its own small synthetic FITS files (an ``_s3d`` cube and
an ``_i2d`` image in the real formats) in ``tmp_path``.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import erf

from ismcgm import align as al
from ismcgm import io, linemap, maskio, masks, wcsutil
from ismcgm.mock.maps import _celestial_header as celestial_header

RA0, DEC0 = 150.1, 2.2
Z = 5.093  # Halpha at ~4.0 um (inside F444W and G395M)
FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


# --------------------------------------------------------------------------
# fixture builder
# --------------------------------------------------------------------------
def _cel_wcs(ra, dec, npix, pix):
    return WCS(celestial_header(ra, dec, npix, pix))  # the mock's own TAN grid


def _offset(ra, dec, dx, dy):
    """Sky position offset by (dx east, dy north) arcsec."""
    return ra + dx / 3600.0 / np.cos(np.deg2rad(dec)), dec + dy / 3600.0


def _gauss_map(wcs, shape, comps, psf_fwhm):
    """Pixel-integrated sum of circular Gaussians (unit total flux each x amp).

    ``comps``: list of (dx, dy, amp, sigma) in arcsec offsets from (RA0, DEC0).
    Exact for small fields: pixel edges are computed in the tangent plane.
    """
    ny, nx = shape
    pix = abs(wcs.wcs.cdelt[0]) * 3600.0
    # tangent-plane offsets of pixel centres
    cx, cy = wcs.world_to_pixel_values(RA0, DEC0)
    xe = -(np.arange(nx + 1) - 0.5 - cx) * pix  # east offsets of x edges (x grows west)
    ye = (np.arange(ny + 1) - 0.5 - cy) * pix
    out = np.zeros(shape)
    for dx, dy, amp, sig in comps:
        s = np.sqrt(2.0) * np.hypot(sig, psf_fwhm / FWHM)
        fx = 0.5 * np.abs(np.diff(erf((xe - dx) / s)))
        fy = 0.5 * np.abs(np.diff(erf((ye - dy) / s)))
        out += amp * np.outer(fy, fx)
    return out


def write_image(path, comps, *, npix=80, pix=0.04, psf=0.1, noise=2e-3, ra=RA0, dec=DEC0, seed=1):
    w = _cel_wcs(ra, dec, npix, pix)
    data = _gauss_map(w, (npix, npix), comps, psf) * 100.0
    rng = np.random.default_rng(seed)
    data = data + noise * rng.standard_normal(data.shape)
    h = w.to_header()
    h["BUNIT"] = "MJy/sr"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data.astype(np.float32), header=h, name="SCI")]).writeto(path)
    return path


def write_cube(path, comps, *, wcs_err=(0.0, 0.0), npix=25, pix=0.1, psf=0.2, nwave=300,
               w0=3.85, dw=0.0018, noise=0.02, cont=2.0, line=40.0, nan_edge=True, bunit="MJy/sr", seed=2,
               centre=(0.05, -0.05)):
    """IFU cube whose header WCS is wrong by ``wcs_err`` (header minus true, arcsec)."""
    ra_c, dec_c = _offset(RA0, DEC0, *centre)
    true = _cel_wcs(ra_c, dec_c, npix, pix)
    smap = _gauss_map(true, (npix, npix), comps, psf)
    wave = w0 + dw * np.arange(nwave)
    ha = 6564.61 * (1 + Z) * 1e-4
    prof = np.exp(-0.5 * ((wave - ha) / 0.002) ** 2)
    spec = cont * (wave / 4.0) ** -2 + line * prof
    rng = np.random.default_rng(seed)
    sci = spec[:, None, None] * smap[None] * 100.0 + noise * rng.standard_normal((nwave, npix, npix))
    err = np.full(sci.shape, noise)
    dq = np.zeros(sci.shape, np.uint32)
    if nan_edge:
        for a in (sci, err):
            a[:, 0, :] = a[:, -1, :] = a[:, :, 0] = a[:, :, -1] = np.nan
            a[:, :, -2] = np.nan
        dq[np.isnan(sci)] = 513
    hra, hdec = _offset(ra_c, dec_c, *wcs_err)
    w3 = WCS(naxis=3)
    w3.wcs.ctype = ["RA---TAN", "DEC--TAN", "WAVE"]
    w3.wcs.cunit = ["deg", "deg", "um"]
    w3.wcs.crval = [hra, hdec, w0]
    w3.wcs.crpix = [(npix + 1) / 2.0, (npix + 1) / 2.0, 1.0]
    w3.wcs.cdelt = [-pix / 3600.0, pix / 3600.0, dw]
    h = w3.to_header()
    h["PIXAR_SR"] = ((pix * u.arcsec) ** 2).to_value(u.sr)
    hs = h.copy()
    hs["BUNIT"] = bunit
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(sci.astype(np.float32), header=hs, name="SCI"),
        fits.ImageHDU(err.astype(np.float32), header=hs, name="ERR"),
        fits.ImageHDU(dq, header=h, name="DQ"),
    ]).writeto(path)
    return path


SINGLE = [(0.0, 0.0, 1.0, 0.08), (0.06, 0.04, 0.4, 0.05)]
SEP = 0.35
MERGER = [(SEP * np.cos(0.6), SEP * np.sin(0.6), 1.0, 0.06), (-SEP * np.cos(0.6), -SEP * np.sin(0.6), 0.7, 0.06)]


def make_row(gid="synth01", image="", cube="", merger=False, exclude="", comps=None):
    row = {"id": gid, "z": Z, "logmstar": 10.0, "ra": RA0, "dec": DEC0, "cube_g235m": "", "cube_g395m": cube,
           "cube_g395h": "", "image": image, "image_filter": "F444W", "image_psf_fwhm": 0.1,
           "ifu_psf_fwhm": 0.2, "merger": merger, "components": "", "exclude_region": exclude}
    if merger:
        pos = [_offset(RA0, DEC0, c[0], c[1]) for c in comps]
        row["components"] = ";".join(f"{r:.9f},{d:.9f}" for r, d in pos)
    return pd.Series(row)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    err = (0.12, -0.09)  # |err| = 0.15"
    img = write_image(d / "synth01_f444w_i2d.fits", SINGLE)
    cub = write_cube(d / "synth01_g395m_s3d.fits", SINGLE, wcs_err=err)
    row = make_row(image=str(img), cube=str(cub))
    cube = io.read_cube(cub, row["id"])
    image = io.read_image(img, row["id"])
    shift = al.align(cube, image, row)
    aligned = wcsutil.shifted_wcs(cube.wcs, shift[0], shift[1])
    return {"dir": d, "err": err, "row": row, "cube": cube, "image": image, "shift": shift, "wcs": aligned}


@pytest.fixture(scope="module")
def merger(tmp_path_factory):
    d = tmp_path_factory.mktemp("merger")
    err = (-0.05, 0.14)
    img = write_image(d / "synth02_f444w_i2d.fits", MERGER)
    cub = write_cube(d / "synth02_g395m_s3d.fits", MERGER, wcs_err=err)
    row = make_row("synth02", image=str(img), cube=str(cub), merger=True, comps=MERGER)
    cube = io.read_cube(cub, row["id"])
    image = io.read_image(img, row["id"])
    shift = al.align(cube, image, row)
    aligned = wcsutil.shifted_wcs(cube.wcs, shift[0], shift[1])
    m = masks.make_masks(image, cube, aligned, row)
    return {"row": row, "cube": cube, "image": image, "shift": shift, "wcs": aligned, "masks": m, "err": err}


# --------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------
def test_shifted_wcs_moves_sky_position():
    w = _cel_wcs(RA0, DEC0, 10, 0.1)
    s = wcsutil.shifted_wcs(w, 0.3, -0.2)
    a = SkyCoord(*w.pixel_to_world_values(4.5, 4.5), unit="deg")
    b = SkyCoord(*s.pixel_to_world_values(4.5, 4.5), unit="deg")
    dra, ddec = a.spherical_offsets_to(b)
    assert dra.to_value(u.arcsec) == pytest.approx(0.3, abs=1e-6)
    assert ddec.to_value(u.arcsec) == pytest.approx(-0.2, abs=1e-6)


def test_alignment_recovers_injected_offset(single):
    dra, ddec, resid = single["shift"]
    ex, ey = single["err"]
    # the shift is added to the IFU position: it equals minus the WCS error
    assert np.hypot(dra + ex, ddec + ey) < 0.03
    assert 0 <= resid < 0.03


def test_alignment_merger(merger):
    dra, ddec, resid = merger["shift"]
    ex, ey = merger["err"]
    assert np.hypot(dra + ex, ddec + ey) < 0.03
    assert resid < 0.03


def test_alignment_grating_choice():
    row = make_row()
    row["cube_g235m"] = "a.fits"
    row["cube_g395m"] = "b.fits"
    assert al.alignment_grating(row) == "g395m"
    row["image_filter"] = "F277W"
    assert al.alignment_grating(row) == "g235m"
    row["image_filter"] = "F125W"
    assert al.alignment_grating(row) == "g395m"


def test_collapse_f125w_uses_line_free_continuum(single):
    img, sig, used = al.collapse_continuum(single["cube"], "F125W", Z)
    ha = 6564.61 * (1 + Z) * 1e-4
    assert used.sum() > 100
    assert not np.any(used & (np.abs(single["cube"].wave_um / ha - 1) * 3e5 < 1500))


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------
def test_masks_single_nonempty_disjoint(single):
    m = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"])
    reg = m["regions"]
    assert set(reg) == {"ISM", "CGM"}
    assert reg["ISM"].any() and reg["CGM"].any()
    assert not np.any(reg["ISM"] & reg["CGM"])
    # no invalid spaxel in any mask
    valid = single["cube"].valid_spaxels
    assert not np.any((reg["ISM"] | reg["CGM"]) & ~valid)
    # the galaxy position is in the ISM on the aligned grid
    x, y = single["wcs"].world_to_pixel_values(RA0, DEC0)
    assert reg["ISM"][int(round(float(y))), int(round(float(x)))]
    info = m["info"]
    pix_area = 0.1**2
    assert info["ISM"]["n_spaxels"] == reg["ISM"].sum()
    assert info["CGM"]["area_arcsec2"] == pytest.approx(reg["CGM"].sum() * pix_area, rel=1e-6)
    assert info["CGM"]["r_cgm_kpc"] > info["ISM"]["r_kpc"]
    assert info["CGM"]["r_cgm_kpc"] == info["ISM"]["r_cgm_kpc"]
    # CGM reaches no farther than ISM + dilation + top-hat radius (+ half a spaxel diagonal)
    from scipy.ndimage import distance_transform_edt
    d = distance_transform_edt(~reg["ISM"]) * 0.1
    assert d[reg["CGM"]].max() <= 0.1 * np.sqrt(2) + 0.25 + 1e-9


def test_masks_roundtrip(single, tmp_path):
    m = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"])
    path = tmp_path / "synth01_masks.fits"
    maskio.write_masks(path, m, meta={"ID": "synth01", "Z": Z, "SHIFTRA": single["shift"][0]})
    reg, w, hdrs = maskio.read_masks(path)
    assert list(reg) == ["ISM", "CGM"]
    for k in reg:
        assert np.array_equal(reg[k], m["regions"][k])
        assert hdrs[k]["NSPAX"] == m["info"][k]["n_spaxels"]
        assert hdrs[k]["ISMNSIG"] == 9.0 and hdrs[k]["DILITER"] == 1 and hdrs[k]["TOPHATD"] == 0.5
        assert hdrs[k]["VARIANT"] == "default"
        assert hdrs[k]["RCGMKPC"] == pytest.approx(m["info"][k]["r_cgm_kpc"])
    assert hdrs["PRIMARY"]["ID"] == "synth01"
    assert np.allclose(w.wcs.crval, single["wcs"].wcs.crval, rtol=0, atol=1e-12)
    with fits.open(path) as h:
        assert h["ISM"].data.dtype == np.uint8


def test_lower_threshold_gives_larger_ism(single):
    m9 = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"], {"ism_nsigma": 9})
    m5 = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"], {"ism_nsigma": 5})
    assert m5["regions"]["ISM"].sum() > m9["regions"]["ISM"].sum()
    assert np.all(m5["regions"]["ISM"][m9["regions"]["ISM"]])
    assert m5["ism_image"].sum() > m9["ism_image"].sum()


def test_merger_halves_on_correct_sides(merger):
    reg = merger["masks"]["regions"]
    assert set(reg) == {"ISM_A", "CGM_A", "ISM_B", "CGM_B"}
    names = list(reg)
    for i, a in enumerate(names):
        assert reg[a].any()
        for b in names[i + 1:]:
            assert not np.any(reg[a] & reg[b])
    w = merger["wcs"]
    pa = SkyCoord(*_offset(RA0, DEC0, MERGER[0][0], MERGER[0][1]), unit="deg")
    pb = SkyCoord(*_offset(RA0, DEC0, MERGER[1][0], MERGER[1][1]), unit="deg")
    for name, m in reg.items():
        yy, xx = np.nonzero(m)
        sky = SkyCoord(*w.pixel_to_world_values(xx, yy), unit="deg")
        closer_a = sky.separation(pa) <= sky.separation(pb)
        if name.endswith("_A"):
            assert np.all(closer_a)
        else:
            assert not np.any(closer_a)
    # each ISM half contains its component
    for name, p in (("ISM_A", pa), ("ISM_B", pb)):
        x, y = w.world_to_pixel(p)
        assert reg[name][int(round(float(y))), int(round(float(x)))]


def test_exclude_region_removes_exactly_its_spaxels(single, tmp_path):
    base = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"])
    cra, cdec = _offset(RA0, DEC0, -0.4, 0.1)
    reg_file = tmp_path / "agn.reg"
    reg_file.write_text(
        "# Region file format: DS9 version 4.1\nglobal color=green\nicrs\n"
        f'circle({cra:.8f},{cdec:.8f},0.25")\n'
    )
    row = single["row"].copy()
    row["exclude_region"] = str(reg_file)
    m = masks.make_masks(single["image"], single["cube"], single["wcs"], row)
    # independent computation of the circle's spaxels (centres inside)
    ny, nx = base["regions"]["ISM"].shape
    yy, xx = np.indices((ny, nx))
    sky = SkyCoord(*single["wcs"].pixel_to_world_values(xx, yy), unit="deg")
    inside = sky.separation(SkyCoord(cra, cdec, unit="deg")).to_value(u.arcsec) < 0.25
    assert np.any(inside & base["regions"]["CGM"])
    for k in ("ISM", "CGM"):
        assert np.array_equal(m["regions"][k], base["regions"][k] & ~inside)


def test_line_map_peaks_on_galaxy(single):
    ha = linemap.line_map(single["cube"], Z)
    assert ha.shape == single["cube"].sci.shape[1:]
    iy, ix = np.unravel_index(np.nanargmax(ha), ha.shape)
    x, y = single["wcs"].world_to_pixel_values(RA0, DEC0)
    assert abs(ix - float(x)) <= 1.5 and abs(iy - float(y)) <= 1.5


# --------------------------------------------------------------------------
# bad input: one-line errors naming galaxy and file
# --------------------------------------------------------------------------
def _one_line(exc, gid, path):
    msg = str(exc.value)
    assert "\n" not in msg
    assert gid in msg
    assert str(path) in msg
    return msg


def test_error_no_overlap(single, tmp_path):
    far = write_image(tmp_path / "far_i2d.fits", SINGLE, ra=RA0 + 0.5)
    image = io.read_image(far, "synth01")
    with pytest.raises(io.InputError) as exc:
        masks.make_masks(image, single["cube"], single["wcs"], single["row"])
    assert "overlap" in _one_line(exc, "synth01", far)
    with pytest.raises(io.InputError) as exc:
        al.align(single["cube"], image, single["row"])
    assert "overlap" in _one_line(exc, "synth01", far)


def test_error_empty_ism(single):
    with pytest.raises(io.InputError) as exc:
        masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"], {"ism_nsigma": 1e6})
    msg = _one_line(exc, "synth01", single["image"].path)
    assert "ism_nsigma=1e+06" in msg


def test_error_bad_region_file(single, tmp_path):
    bad = tmp_path / "bad.reg"
    bad.write_text("this is { not a region file\ncircle(1,2\n")
    row = single["row"].copy()
    row["exclude_region"] = str(bad)
    with pytest.raises(io.InputError) as exc:
        masks.make_masks(single["image"], single["cube"], single["wcs"], row)
    assert "region" in _one_line(exc, "synth01", bad)


def test_error_empty_cgm(single):
    with pytest.raises(io.InputError) as exc:
        masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"],
                         {"dilation_iterations": 0, "tophat_diameter_arcsec": 0.0})
    assert "CGM is empty" in _one_line(exc, "synth01", single["cube"].path)


def test_error_wrong_bunit(tmp_path):
    path = write_cube(tmp_path / "synth03_g395m_s3d.fits", SINGLE, nwave=20, bunit="erg/(s cm2 Angstrom)")
    with pytest.raises(io.InputError) as exc:
        io.read_cube(path, "synth03")
    assert "BUNIT" in _one_line(exc, "synth03", path)


def test_cgm_outer_choices(single, caplog):
    """An unknown boundary is an error; a [C II] boundary without an ALMA cube falls back to the top-hat."""
    with pytest.raises(ValueError, match="cgm_outer"):
        masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"], {"cgm_outer": "5r_cii"})
    ref = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"])
    with caplog.at_level("WARNING"):
        m = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"], {"cgm_outer": "4r_cii"})
    assert m["cgm_outer_used"] == "tophat" and "no ALMA cube" in caplog.text
    for k in ref["regions"]:
        np.testing.assert_array_equal(m["regions"][k], ref["regions"][k])


def test_fig1_writes_pdf_png(merger, single, tmp_path):
    from ismcgm.plots.fig1_masks import plot_fig1

    m1 = masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"])
    panels = [
        {"id": "synth01", "ha_map": linemap.line_map(single["cube"], Z), "masks": m1, "wcs": single["wcs"],
         "z": Z, "merger": False},
        {"id": "synth02", "ha_map": linemap.line_map(merger["cube"], Z), "masks": merger["masks"]["regions"],
         "pixscale": 0.1, "z": Z, "merger": True},
    ]
    fig = plot_fig1(panels, tmp_path / "fig1.pdf", tmp_path / "fig1.png", synthetic=True)
    assert (tmp_path / "fig1.pdf").stat().st_size > 0 and (tmp_path / "fig1.png").stat().st_size > 0
    texts = [t.get_text() for t in fig.texts]
    assert any("SYNTHETIC MOCK DATA" in t for t in texts)


def test_tophat_radius_replaces_diameter(single, tmp_path):
    """tophat_radius_arcsec r gives the CGM of tophat_diameter_arcsec 2r, and a larger radius a larger CGM."""
    m = lambda p: masks.make_masks(single["image"], single["cube"], single["wcs"], single["row"], p)  # noqa: E731
    by_diameter = m({"tophat_diameter_arcsec": 0.6})
    by_radius = m({"tophat_diameter_arcsec": 0.2, "tophat_radius_arcsec": 0.3})
    for k in by_diameter["regions"]:
        np.testing.assert_array_equal(by_radius["regions"][k], by_diameter["regions"][k])
    wider = m({"tophat_radius_arcsec": 0.5})
    assert wider["regions"]["CGM"].sum() > m({"tophat_diameter_arcsec": 0.5})["regions"]["CGM"].sum()
    assert wider["info"]["CGM"]["r_cgm_kpc"] > by_diameter["info"]["CGM"]["r_cgm_kpc"]
    maskio.write_masks(tmp_path / "r.fits", wider)
    maskio.write_masks(tmp_path / "d.fits", by_diameter)
    assert maskio.read_masks(tmp_path / "r.fits")[2]["PRIMARY"]["TOPHATR"] == 0.5
    assert "TOPHATR" not in maskio.read_masks(tmp_path / "d.fits")[2]["PRIMARY"]  # unset: no card
    with pytest.raises(io.InputError, match="invalid mask parameters"):
        m({"tophat_radius_arcsec": -0.1})
