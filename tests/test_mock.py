"""The SYNTHETIC mock survey: formats, determinism, noise and truth (issue 3)."""

from __future__ import annotations

import filecmp
import json

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from ismcgm import instrument as ins
from ismcgm import mock


@pytest.fixture(scope="module")
def plans(test_mock_cfg):
    return mock.plan_survey(test_mock_cfg)


def _plan(plans, merger=None, grating=None):
    for p in plans:
        if merger is not None and p["merger"] != merger:
            continue
        if grating is not None and grating not in p["ifu"]["gratings"]:
            continue
        return p
    raise LookupError("no such mock galaxy in the test plan")


def test_plan_has_required_roles(test_mock_cfg):
    cfg = dict(test_mock_cfg, n_galaxies=18)
    plans = mock.plan_survey(cfg)
    ids = [p["id"] for p in plans]
    assert ids == [f"mock{i:02d}" for i in range(1, 19)]
    zs = np.array([p["z"] for p in plans])
    assert zs.min() > 4.4 and zs.max() < 5.7
    assert ((zs > 5.0) & (zs < 5.3)).sum() >= 3
    assert sum(p["merger"] for p in plans) in (4, 5)
    assert sum("g395h" in p["ifu"]["gratings"] for p in plans) == 1
    assert sum(p["image"]["filter"] == "F125W" for p in plans) == 1
    err = np.array([np.hypot(*p["ifu_wcs_error_arcsec"]) for p in plans])
    assert err.min() >= 0.1 and err.max() <= 0.2
    logm = np.array([p["logmstar"] for p in plans])
    assert logm.min() >= 9.5 and logm.max() <= 11.0


def test_plan_is_deterministic_and_seed_dependent(test_mock_cfg):
    a = mock.plan_survey(test_mock_cfg)
    b = mock.plan_survey(dict(test_mock_cfg))
    c = mock.plan_survey(dict(test_mock_cfg, seed=test_mock_cfg["seed"] + 1))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(a, sort_keys=True) != json.dumps(c, sort_keys=True)


def test_injected_shift_changes_only_that_ratio(test_mock_cfg):
    shifts = dict(test_mock_cfg["cgm_minus_ism_dex"], O3=0.5)
    a = mock.plan_survey(test_mock_cfg)
    b = mock.plan_survey(dict(test_mock_cfg, cgm_minus_ism_dex=shifts))
    for pa, pb in zip(a, b):
        d = pb["cgm_minus_ism_dex"]["O3"] - pa["cgm_minus_ism_dex"]["O3"]
        assert d == pytest.approx(0.5 - test_mock_cfg["cgm_minus_ism_dex"]["O3"])
        assert pa["cgm_minus_ism_dex"]["O2"] == pb["cgm_minus_ism_dex"]["O2"]
        # the image and the ALMA cube do not depend on the O3 shift
        assert mock.product_plan(pa, "image") == mock.product_plan(pb, "image")
        assert mock.product_plan(pa, "alma") == mock.product_plan(pb, "alma")
        assert mock.product_plan(pa, "cube") != mock.product_plan(pb, "cube")


def test_files_are_byte_identical_for_the_same_seed(plans, tmp_path, test_mock_cfg):
    p = _plan(plans, merger=True)
    for name in ("a", "b"):
        mock.write_cube(p, "g235m", tmp_path / f"{name}.fits")
        mock.write_alma(p, tmp_path / f"{name}_alma.fits")
    assert filecmp.cmp(tmp_path / "a.fits", tmp_path / "b.fits", shallow=False)
    assert filecmp.cmp(tmp_path / "a_alma.fits", tmp_path / "b_alma.fits", shallow=False)
    other = [q for q in mock.plan_survey(dict(test_mock_cfg, seed=99)) if q["id"] == p["id"]][0]
    mock.write_cube(other, "g235m", tmp_path / "c.fits")
    assert not filecmp.cmp(tmp_path / "a.fits", tmp_path / "c.fits", shallow=False)


def test_cube_format_units_and_wcs(plans, tmp_path):
    p = _plan(plans)
    path = tmp_path / "cube.fits"
    mock.write_cube(p, "g235m", path)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "DQ"]
        assert hdul[0].header["MOCK"] is True
        for ext in ("SCI", "ERR"):
            assert u.Unit(hdul[ext].header["BUNIT"]) == u.MJy / u.sr
        hdr = hdul["SCI"].header
        w = WCS(hdr)
        assert w.naxis == 3 and w.has_spectral
        assert hdr["CUNIT3"] == "um" and hdr["CTYPE3"] == "WAVE"
        wave = w.sub([3]).pixel_to_world_values(np.arange(hdr["NAXIS3"])) * u.Unit(w.wcs.cunit[2]).to(u.um)
        g = ins.get_grating("g235m")
        assert wave[0] == pytest.approx(g.wmin_um) and wave[-1] <= g.wmax_um
        scales = w.celestial.proj_plane_pixel_scales()
        assert scales[0].to_value(u.arcsec) == pytest.approx(0.1)
        assert hdr["PIXAR_SR"] == pytest.approx(((0.1 * u.arcsec) ** 2).to_value(u.sr))
        sci, dq = hdul["SCI"].data, hdul["DQ"].data
        nan_spax = np.all(np.isnan(sci), axis=0)
        assert nan_spax[0].all() and nan_spax[:, 0].all() and not nan_spax.all()
        assert np.all(dq[:, nan_spax] & 1)


def test_noise_matches_err(plans):
    """(SCI - noiseless model) / ERR has unit variance over the valid voxels."""
    p = _plan(plans, merger=True)
    for grating in p["ifu"]["gratings"]:
        sci, err, dq, _ = mock.noisy_cube(p, grating)
        model, _, _ = mock.noiseless_cube(p, grating)
        good = np.isfinite(sci)
        pull = (sci[good] - model[good]) / err[good]
        assert abs(np.std(pull) - 1.0) < 0.02
        assert abs(np.mean(pull)) < 0.01


def test_err_is_higher_at_band_edges(plans):
    p = _plan(plans)
    _, err, wave = mock.noiseless_cube(p, "g395m" if "g395m" in p["ifu"]["gratings"] else "g395h")
    spec = err[:, 12, 12] / wave**2  # MJy/sr -> proportional to F_lambda
    mid = spec[len(spec) // 2]
    assert spec[0] > 1.5 * mid and spec[-1] > 1.5 * mid


@pytest.mark.parametrize("grating", ["g235m", "g395m", "g395h"])
def test_truth_maps_sum_to_injected_flux(plans, grating):
    p = _plan(plans, grating=grating)
    maps = mock.truth_maps(p, grating)
    inside = ins.lines_in_grating(grating, p["z"] * (1 + p["velocity_kms"] / ins.C_KMS), margin_um=0.0)
    assert inside, "test galaxy has no line in this grating"
    for line in inside:
        injected = sum(p["observed_fluxes"][r][line] for r in ("ISM", "CGM"))
        assert maps[line].sum() == pytest.approx(injected, rel=2e-3)


def test_cube_line_flux_equals_truth(plans):
    """Integrating the noiseless cube over a line gives the truth map (per spaxel)."""
    p = _plan(plans, grating="g235m")
    cube, _, wave = mock.noiseless_cube(p, "g235m")
    g = ins.get_grating("g235m")
    pixar_sr = ((0.1 * u.arcsec) ** 2).to_value(u.sr)
    flam = (cube * u.MJy).to(u.erg / u.s / u.cm**2 / u.AA,
                             equivalencies=u.spectral_density(wave[:, None, None] * u.um)).value * pixar_sr
    truth = mock.truth_maps(p, "g235m")["OII3728"]
    obs = ins.observed_wavelength_um("OII3728", p["z"]) * (1 + p["velocity_kms"] / ins.C_KMS)
    win = np.abs(wave - obs) < 0.02
    cont = np.median(flam[(np.abs(wave - obs) > 0.03) & (np.abs(wave - obs) < 0.05)], axis=0)
    line = ((flam[win] - cont) * g.dlam_um * 1e4).sum(axis=0)
    assert line.sum() == pytest.approx(truth.sum(), rel=0.01)


def test_wcs_error_is_in_the_cube_header_relative_to_the_image(plans):
    """Continuum centroid: cube header WCS minus image WCS equals ifu_wcs_error_arcsec."""
    for p in plans:
        cube, _, wave = mock.noiseless_cube(p, "g235m")
        # line-free continuum: median over the band (lines cover few channels)
        cont = np.median(cube, axis=0)
        _, hdr = mock.ifu_geometry(p)
        y, x = ndimage.center_of_mass(cont)
        ra_c, dec_c = WCS(hdr).pixel_to_world_values(x, y)
        img = mock.noiseless_image(p)
        imhdr = mock._celestial_header(p["ra"], p["dec"], p["image"]["npix"], p["image"]["pixscale"])
        yi, xi = ndimage.center_of_mass(img)
        ra_i, dec_i = WCS(imhdr).pixel_to_world_values(xi, yi)
        dra = (ra_c - ra_i) * np.cos(np.deg2rad(dec_i)) * 3600
        ddec = (dec_c - dec_i) * 3600
        assert dra == pytest.approx(p["ifu_wcs_error_arcsec"][0], abs=0.005)
        assert ddec == pytest.approx(p["ifu_wcs_error_arcsec"][1], abs=0.005)


def test_alma_cube_format_and_truth(plans, tmp_path):
    p = _plan(plans)
    path = tmp_path / "alma.fits"
    mock.write_alma(p, path)
    with fits.open(path) as hdul:
        hdr = hdul[0].header
        assert u.Unit(hdr["BUNIT"]) == u.Jy / u.beam
        for k in ("BMAJ", "BMIN", "BPA"):
            assert k in hdr
        w = WCS(hdr)
        assert w.wcs.ctype[2] == "FREQ"
        freqs = w.sub([3]).pixel_to_world_values(np.arange(hdr["NAXIS3"]))
        nu = ins.cii_observed_ghz(p["z"]) * 1e9
        assert freqs.min() < nu < freqs.max()
    cii, _ = mock.cii_truth_map(p)
    total_jykms = sum(p["observed_fluxes"][r]["CII"] for r in ("ISM", "CGM")) / (1e-23 * nu / ins.C_KMS)
    assert cii.sum() == pytest.approx(total_jykms, rel=0.01)
    # the noiseless cube integrates back to the truth; the noise has the stated rms
    signal = mock.alma_cube(p, noise=False)
    assert signal.sum() * mock.ALMA_DV_KMS / mock.beam_area_pix(p) == pytest.approx(cii.sum(), rel=0.01)
    noise = mock.alma_cube(p) - signal
    assert noise.std() == pytest.approx(p["alma"]["noise_mjy"] * 1e-3, rel=1e-6)
    # beam-correlated: neighbouring pixels are strongly correlated
    assert np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1] > 0.5


def test_image_is_mjysr_with_wcs(plans, tmp_path):
    p = _plan(plans)
    path = tmp_path / "img.fits"
    mock.write_image(p, path)
    with fits.open(path) as hdul:
        assert u.Unit(hdul["SCI"].header["BUNIT"]) == u.MJy / u.sr
        assert WCS(hdul["SCI"].header).has_celestial


def test_sample_table_validates(plans):
    from snakemake.utils import validate

    from tests.conftest import REPO

    df = pd.DataFrame(mock.sample_rows(plans))
    validate(df, str(REPO / "workflow" / "schemas" / "samples.schema.yaml"))
    assert df["id"].str.match(r"^mock\d+$").all()


def test_exponential_mixture_is_an_exponential():
    """The Gaussian mixture of mock.geometry follows exp(-r/h) to < 1.5 % of the centre and holds unit flux."""
    from ismcgm.mock import geometry as geo

    w, s = (np.array(v) for v in geo.exponential_mixture())
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    r = np.linspace(0.0, 8.0, 401)
    mix = (w * np.exp(-0.5 * (r[:, None] / s) ** 2) / (2 * np.pi * s**2)).sum(axis=1)
    exp = np.exp(-r) / (2 * np.pi)
    assert np.abs(mix - exp).max() < 0.015 * exp[0]
    assert np.abs(mix[50:300] / exp[50:300] - 1).max() < 0.015  # 1-6 scale lengths


def test_paper_geometry_sizes_and_shared_draws(test_mock_cfg):
    """mock.geometry: paper draws R_e, the 9-sigma isophote at 2 R_e and an exponential halo; every other
    draw (z, fluxes, shifts) is the compact preset's, and compact keeps the original clumps and halo."""
    from ismcgm.constants import proper_kpc_per_arcsec
    from ismcgm.mock import geometry as geo

    cfg = dict(test_mock_cfg, n_galaxies=8, ifu_npix=None)
    paper = mock.plan_survey(dict(cfg, geometry="paper"))
    compact = mock.plan_survey(dict(cfg, geometry="compact"))
    for p, c in zip(paper, compact):
        assert p["z"] == c["z"] and p["intrinsic_fluxes"] == c["intrinsic_fluxes"]
        assert p["ifu"]["npix"] == geo.IFU_NPIX["paper"] and c["ifu"]["npix"] == geo.IFU_NPIX["compact"]
        assert all("halo_sigma" in comp and "halo_gaussians" not in comp for comp in c["components"])
        kpc = proper_kpc_per_arcsec(p["z"])
        re = [comp["ism_profile"]["re_kpc"] for comp in p["components"]]
        assert all(geo.PAPER_RE_KPC[0] <= x <= geo.PAPER_RE_KPC[1] for x in re)
        assert p["image"]["r_ism_arcsec"] * kpc == pytest.approx(2 * np.sqrt(np.mean(np.square(re))))
        for comp in p["components"]:
            assert sum(g["weight"] for g in comp["halo_gaussians"]) == pytest.approx(1.0)
            assert geo.PAPER_HALO_H_KPC[0] <= comp["halo_profile"]["h_kpc"] <= geo.PAPER_HALO_H_KPC[1]
        if p["merger"]:
            a, b = p["components"]
            assert geo.PAPER_MERGER_SEP_ARCSEC[0] <= np.hypot(a["dx"] - b["dx"], a["dy"] - b["dy"]) <= 1.3 + 1e-9


@pytest.mark.parametrize("geometry", ["paper", "compact"])
def test_unrealised_plan_is_the_plan_without_cosmology(test_mock_cfg, geometry):
    """The Snakefile plans without the paper geometry's sizes (``realise=False``): what it reads from the plan
    (sample rows, product paths) is the full plan's, ``realise_plan`` gives the full plan exactly (key order
    included: truth.json is written from it), and planning so does not import astropy.cosmology (~0.5 s of
    every ``snakemake`` invocation, the no-op rerun included)."""
    import subprocess
    import sys

    cfg = dict(test_mock_cfg, n_galaxies=8, geometry=geometry, ifu_npix=None)
    full, bare = mock.plan_survey(cfg), mock.plan_survey(cfg, realise=False)
    assert json.dumps([mock.realise_plan(p) for p in bare]) == json.dumps(full)
    assert mock.sample_rows(bare) == mock.sample_rows(full)
    assert [mock.product_paths(p) for p in bare] == [mock.product_paths(p) for p in full]
    assert (json.dumps(bare) == json.dumps(full)) == (geometry == "compact")
    code = (f"import sys, json; from ismcgm import mock; mock.plan_survey(json.loads({json.dumps(json.dumps(cfg))}), "
            "realise=False); print('astropy.cosmology' in sys.modules)")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "False"
