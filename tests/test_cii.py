"""[C II] from ALMA cubes (SPEC section 11): reading, mask reprojection,
extraction, fitting, beam-correlated Monte Carlo errors, the [C II]/Ha table,
the simulation-map comparison and Fig. 6.  Everything runs on the SYNTHETIC
mock survey (ismcgm.mock)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from ismcgm import cii, mock
from ismcgm import instrument as ins
from ismcgm.io import InputError
from tests.conftest import default_mock_cfg

CFG = default_mock_cfg(seed=1, n_galaxies=4, ifu_npix=31, geometry="compact")
SEEDS = (1, 2, 3)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _mask_wcs(plan, n=41, pix=0.1):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [plan["ra"], plan["dec"]]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-pix / 3600.0, pix / 3600.0]
    return w


def _make_masks(plan, n=41, r_ism=0.25, r_cgm=0.6):
    """Circular ISM (r < r_ism) and annular CGM masks on a 0.1" grid; mergers split by proximity."""
    w = _mask_wcs(plan, n)
    yy, xx = np.mgrid[0:n, 0:n]
    ra, dec = w.pixel_to_world_values(xx, yy)
    dists = [np.hypot((ra - c["ra"]) * np.cos(np.deg2rad(c["dec"])) * 3600, (dec - c["dec"]) * 3600)
             for c in plan["components"]]
    ism = np.zeros((n, n), bool)
    cgm = np.zeros((n, n), bool)
    for d in dists:
        ism |= d < r_ism
        cgm |= d < r_cgm
    cgm &= ~ism
    if not plan["merger"]:
        return {"ISM": ism, "CGM": cgm}, w
    a = dists[0] <= dists[1]
    return {"ISM_A": ism & a, "CGM_A": cgm & a, "ISM_B": ism & ~a, "CGM_B": cgm & ~a}, w


def _alma_from(plan, data):
    """An in-memory AlmaCube on the mock ALMA grid holding ``data``."""
    hdr, freqs = mock.alma_geometry(plan)
    bmaj, bmin, bpa = plan["alma"]["beam_arcsec_deg"]
    return cii.AlmaCube("memory", plan["id"], np.asarray(data, float), WCS(fits.Header(hdr)), freqs,
                        bmaj, bmin, bpa, plan["alma"]["pixscale"], fits.Header())


def _write_masks(path, masks, wcs):
    hdus = [fits.PrimaryHDU()]
    for name, m in masks.items():
        hdus.append(fits.ImageHDU(m.astype(np.uint8), header=wcs.to_header(), name=name))
    fits.HDUList(hdus).writeto(path)


@pytest.fixture(scope="module")
def plans():
    return mock.plan_survey(CFG)


@pytest.fixture(scope="module")
def alma_file(plans, tmp_path_factory):
    d = tmp_path_factory.mktemp("alma")
    plan = next(p for p in plans if p["merger"])
    path = d / f"{plan['id']}_cii_cube.fits"
    mock.write_alma(plan, path)
    return plan, path


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
def test_read_alma_cube(alma_file):
    plan, path = alma_file
    a = cii.read_alma_cube(path, plan["id"])
    _, freqs = mock.alma_geometry(plan)
    assert a.data.shape == (mock.ALMA_NCHAN, mock.ALMA_NPIX, mock.ALMA_NPIX)
    np.testing.assert_allclose(a.freq_hz, freqs, rtol=1e-12)
    assert a.beam == pytest.approx(tuple(plan["alma"]["beam_arcsec_deg"]), rel=1e-6)
    assert a.pixscale == pytest.approx(mock.ALMA_PIXSCALE, rel=1e-9)
    assert a.beam_area_pix == pytest.approx(mock.beam_area_pix(plan), rel=1e-6)
    np.testing.assert_allclose(a.data, mock.alma_cube(plan).astype(np.float32), rtol=1e-6, atol=1e-9)
    # velocity axis: radio convention around the redshifted line
    v = a.velocity(plan["z"])
    nu = ins.cii_observed_ghz(plan["z"]) * 1e9
    np.testing.assert_allclose(v, ins.C_KMS * (1 - freqs / nu), atol=1e-6)
    assert np.median(np.abs(np.diff(v))) == pytest.approx(mock.ALMA_DV_KMS, rel=1e-3)


def _rewrite(src, dst, edit):
    with fits.open(src) as hdul:
        hdu = fits.PrimaryHDU(hdul[0].data, header=hdul[0].header.copy())
    data, hdr = edit(hdu.data, hdu.header)
    fits.PrimaryHDU(data, header=hdr).writeto(dst)
    return dst


def test_read_alma_cube_errors(alma_file, tmp_path):
    plan, path = alma_file

    def drop_beam(d, h):
        del h["BMAJ"], h["BMIN"]
        return d, h

    def kelvin(d, h):
        h["BUNIT"] = "K"
        return d, h

    def velocity_axis(d, h):
        h["CTYPE3"], h["CUNIT3"], h["CRVAL3"], h["CDELT3"] = "VRAD", "km/s", 700.0, -30.0
        return d, h

    cases = {"nobeam": (drop_beam, "BMAJ"), "kelvin": (kelvin, "Jy/beam"), "vrad": (velocity_axis, "frequency axis")}
    for name, (edit, text) in cases.items():
        bad = _rewrite(path, tmp_path / f"{name}.fits", edit)
        with pytest.raises(InputError) as exc:
            cii.read_alma_cube(bad, plan["id"])
        msg = str(exc.value)
        assert "\n" not in msg and text in msg and plan["id"] in msg and "fix:" in msg

    # mJy/beam is rescaled, a degenerate STOKES axis is dropped
    def mjy_stokes(d, h):
        h["BUNIT"] = "mJy/beam"
        h["NAXIS"] = 4
        h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"], h["CUNIT4"] = "STOKES", 1.0, 1.0, 1.0, ""
        return d[None] * 1e3, h

    ok = _rewrite(path, tmp_path / "mjy.fits", mjy_stokes)
    a = cii.read_alma_cube(ok, plan["id"])
    b = cii.read_alma_cube(path, plan["id"])
    assert a.data.shape == b.data.shape
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)


# ---------------------------------------------------------------------------
# masks on the ALMA grid
# ---------------------------------------------------------------------------
def test_reproject_masks_fractional(alma_file):
    plan, path = alma_file
    a = cii.read_alma_cube(path, plan["id"])
    masks, w = _make_masks(plan)
    wts = cii.reproject_masks(masks, w, a)
    total = np.zeros(a.shape2d)
    for name, m in masks.items():
        wt = wts[name]
        assert wt.min() >= 0 and wt.max() <= 1
        assert ((wt > 0) & (wt < 1)).any()  # fractional edge pixels
        # flux conservation of the area: sum(w) x A_alma = mask area
        assert wt.sum() * a.pixscale**2 == pytest.approx(m.sum() * 0.01, rel=1e-6)
        assert wts.coverage[name] == pytest.approx(1.0, abs=1e-6)
        total += wt
    assert total.max() <= 1 + 1e-9  # disjoint masks never count a pixel twice

    far = WCS(w.to_header())
    far.wcs.crval = [plan["ra"] + 0.01, plan["dec"]]
    with pytest.raises(InputError, match="does not overlap"):
        cii.reproject_masks(masks, far, a)
    # a disk half off the cube's edge (the field is 3.84" wide)
    edge = WCS(w.to_header())
    edge.wcs.crval = [plan["ra"] - 1.8 / 3600 / np.cos(np.deg2rad(plan["dec"])), plan["dec"]]
    yy, xx = np.mgrid[0:41, 0:41]
    disk = {"ISM": np.hypot(xx - 20, yy - 20) < 6}
    with pytest.raises(InputError, match="falls on valid ALMA pixels"):
        cii.reproject_masks(disk, edge, a)
    assert cii.reproject_masks(disk, edge, a, min_coverage=0.3).coverage["ISM"] < 0.9


def test_extract_checks_band_and_units(alma_file):
    plan, path = alma_file
    a = cii.read_alma_cube(path, plan["id"])
    masks, w = _make_masks(plan)
    wts = cii.reproject_masks(masks, w, a)
    name = next(iter(masks))
    with pytest.raises(InputError, match="outside the cube's band"):
        cii.extract_cii(a, wts[name], plan["z"] + 0.05)
    # noiseless cube: the integrated spectrum equals the truth map through the weights
    s = _alma_from(plan, mock.alma_cube(plan, noise=False))
    truth, _ = mock.cii_truth_map(plan)
    spec = cii.extract_cii(s, wts[name], plan["z"])
    assert np.sum(spec.flux_jy) * spec.dv_kms == pytest.approx(float((wts[name] * truth).sum()), rel=2e-3)
    fit = cii.fit_cii(spec.velocity, spec.flux_jy, err=1e-6)
    assert fit.flux == pytest.approx(float((wts[name] * truth).sum()), rel=2e-3)
    assert fit.sigma == pytest.approx(plan["sigma_kms"], rel=0.05)
    # Jy km/s <-> erg/s/cm2 (the mock's own conversion)
    nu = ins.cii_observed_ghz(plan["z"]) * 1e9
    f_cgs = plan["observed_fluxes"]["ISM"]["CII"]
    jykms = f_cgs / (1e-23 * nu / ins.C_KMS)
    assert float(cii.jykms_to_cgs(jykms, nu)) == pytest.approx(f_cgs, rel=1e-12)
    assert float(cii.cgs_to_jykms(f_cgs, nu)) == pytest.approx(jykms, rel=1e-12)


# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------
def _gauss(v, a, c, s):
    return a / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((v - c) / s) ** 2)


def test_fit_cii_one_and_two_gaussians():
    rng = np.random.default_rng(3)
    v = np.arange(-900.0, 901.0, 25.0)
    y1 = _gauss(v, 0.8, 40.0, 90.0) + rng.normal(0, 2e-4, v.size)
    f1 = cii.fit_cii(v, y1, err=2e-4)
    assert f1.success and abs(f1.flux - 0.8) < 4 * f1.flux_err and f1.flux_err < 0.05
    y2 = _gauss(v, 0.6, 20.0, 60.0) + _gauss(v, 0.4, -30.0, 250.0) + rng.normal(0, 2e-4, v.size)
    f2 = cii.fit_cii(v, y2, err=2e-4, n_gauss=2)
    assert len(f2.components) == 2
    assert f2.flux == pytest.approx(sum(c[0] for c in f2.components))
    assert abs(f2.flux - 1.0) < 4 * f2.flux_err
    assert f2.components[1][2] >= f2.components[0][2]  # second component is the broader one
    # optional constant
    f3 = cii.fit_cii(v, y1 + 1e-3, err=2e-4, continuum=True)
    assert f3.continuum == pytest.approx(1e-3, abs=2e-4) and abs(f3.flux - 0.8) < 4 * f3.flux_err
    with pytest.raises(ValueError):
        cii.fit_cii(v, y1, n_gauss=3)


def _same_fit(a, b) -> bool:
    """Two CiiFit results are identical in every field (NaN == NaN)."""
    fields = [(a.flux, b.flux), (a.flux_err, b.flux_err), (a.continuum, b.continuum), (a.redchi, b.redchi)]
    same = all(x == y or (np.isnan(x) and np.isnan(y)) for x, y in fields)
    return same and a.success == b.success and a.components == b.components and a.params == b.params


def test_direct_minpack_fit_is_lmfit_bit_for_bit(plans):
    """fit_cii's direct MINPACK path (cii.fastfit) is lmfit's result exactly: the nominal fits (six starts)
    and the analytic-error fits of the regions of two mock galaxies, their Monte Carlo realisations, and
    noise-only and faint spectra whose fits run to the centre and dispersion bounds (a NaN channel,
    channel-dependent errors)."""
    n_diff = n_fit = n_bound = 0

    def check(v, y, err, init=None):
        nonlocal n_diff, n_fit, n_bound
        ref = cii.fit_cii(v, y, err=err, init=init, engine="lmfit")
        n_diff += not _same_fit(cii.fit_cii(v, y, err=err, init=init), ref)
        n_bound += abs(ref.components[0][1]) >= 299.0 or ref.components[0][2] >= 399.0
        n_fit += 1
        return ref

    for plan in plans[:2]:
        a = _alma_from(plan, mock.alma_cube(plan))
        masks, w = _make_masks(plan)
        wts = cii.reproject_masks(masks, w, a)
        rms = cii.estimate_channel_rms(a, cii.signal_free_mask(a, wts), plan["z"])
        for name in masks:
            comp, reg = cii.region_names(plan["id"], name)
            spec = cii.extract_cii(a, wts[name], plan["z"])
            errs = cii.analytic_errors(a, wts[name], rms)
            nominal = check(spec.velocity, spec.flux_jy, errs["beam"])
            check(spec.velocity, spec.flux_jy, errs["naive"], nominal.params)
            noise = cii.noise_spectra(a, wts[name], rms, 3, comp, reg, 30)
            for scale in (1.0, 0.0):  # the data, and noise alone (fits that run to the bounds)
                for y in scale * spec.flux_jy + noise:
                    check(spec.velocity, y, errs["beam"], nominal.params)
            check(spec.velocity, noise[0], errs["beam"])  # noise alone from the six starts
    rng = np.random.default_rng(7)
    v = np.arange(-720.0, 721.0, 20.0)
    err = 1e-4 * rng.uniform(0.8, 1.25, v.size)
    for amp in (0.0, 0.01, 0.05):
        y = _gauss(v, amp, 30.0, 120.0) + rng.normal(0, 1e-4, (20, v.size))
        y[:, 5] = np.nan
        init = check(v, y[0], err).params
        for row in y:
            check(v, row, err, init)
    assert n_fit >= 4 * 63 + 63 and n_bound >= 10, (n_fit, n_bound)
    assert n_diff == 0
    # the other models and the unweighted fit go through lmfit whatever the engine
    assert _same_fit(cii.fit_cii(v, y[0], err=err, continuum=True), cii.fit_cii(v, y[0], err=err, continuum=True,
                                                                                 engine="lmfit"))
    with pytest.raises(ValueError, match="engine"):
        cii.fit_cii(v, y[0], err=err, engine="minpack")


# ---------------------------------------------------------------------------
# Monte Carlo: modes, seeding, kernel
# ---------------------------------------------------------------------------
def test_beam_kernel_matches_mock(plans):
    for plan in plans:
        a = _alma_from(plan, np.zeros((2, mock.ALMA_NPIX, mock.ALMA_NPIX)))
        # north-up grid with x growing west: theta = 90 deg + BPA
        theta = np.rad2deg(cii.beam_theta(a)) % 180
        assert theta == pytest.approx((90 + plan["alma"]["beam_arcsec_deg"][2]) % 180, abs=1e-3)
        ref = mock._beam_kernel(plan).array
        np.testing.assert_allclose(cii.beam_kernel(a), ref / ref.sum(), atol=1e-6 * ref.max())


def test_beam_weights_are_scipy_fftconvolve_bit_for_bit(plans):
    """The fast MC's ``w (x) K`` without importing scipy.signal: the same bits as ``fftconvolve``."""
    from scipy.signal import fftconvolve

    from ismcgm.cii.noise import _beam_weights

    r = np.random.default_rng(3)
    kernels = [cii.beam_kernel(_alma_from(p, np.zeros((2, mock.ALMA_NPIX, mock.ALMA_NPIX)))) for p in plans[:3]]
    kernels.append(r.random((4, 7)))  # even and uneven sides, not symmetric
    for k in kernels:
        for shape in [(k.shape[0] + 9, k.shape[1] + 4), (37, 52), (k.shape[0] + 1, 61)]:
            wc = r.random(shape) * (r.random(shape) > 0.3)
            got = _beam_weights(wc, k)
            assert got.shape == wc.shape and got.flags.c_contiguous
            np.testing.assert_array_equal(got, fftconvolve(wc, k[::-1, ::-1], mode="same"))
    # and it is a correlation with the kernel, not a convolution (a mirrored kernel gives other numbers)
    assert not np.allclose(_beam_weights(wc, k), fftconvolve(wc, k, mode="same"))


def test_mc_modes_and_batches_agree(plans):
    plan = plans[1]
    a = _alma_from(plan, mock.alma_cube(plan))
    masks, w = _make_masks(plan)
    wts = cii.reproject_masks(masks, w, a)
    name = next(iter(masks))
    comp, reg = cii.region_names(plan["id"], name)
    rms = cii.estimate_channel_rms(a, cii.signal_free_mask(a, wts), plan["z"])
    fast = cii.noise_spectra(a, wts[name], rms, 11, comp, reg, 6, mode="fast")
    cube = cii.noise_spectra(a, wts[name], rms, 11, comp, reg, 6, mode="cube")
    np.testing.assert_allclose(fast, cube, rtol=1e-9, atol=1e-12 * np.abs(fast).max())
    batch = cii.noise_spectra(a, wts[name], rms, 11, comp, reg, [3, 4, 5])
    np.testing.assert_array_equal(batch, fast[3:])
    other = cii.noise_spectra(a, wts[name], rms, 11, comp, "CGM" if reg == "ISM" else "ISM", 2)
    assert not np.allclose(other, fast[:2])
    # whole MC in batches == in one go
    full = cii.mc_cii(a, wts[name], plan["z"], comp, reg, seed=11, n_mc=6, rms=rms)
    part = cii.mc_cii(a, wts[name], plan["z"], comp, reg, seed=11, n_mc=range(2, 6), rms=rms)
    np.testing.assert_allclose(part.fluxes, full.fluxes[2:], rtol=1e-10)


def test_joint_noise_is_one_field_shared_by_adjacent_regions(plans):
    """Joint draws: the noise of a union of regions is the sum of theirs (one field); per region the same
    statistics as the region's own draws; batches and order do not matter."""
    plan = plans[1]
    a = _alma_from(plan, mock.alma_cube(plan))
    masks, w = _make_masks(plan)
    wts = cii.reproject_masks(masks, w, a)
    names = list(wts)[:2]
    rms = cii.estimate_channel_rms(a, cii.signal_free_mask(a, wts), plan["z"])
    both = {n: wts[n] for n in names}
    both["union"] = wts[names[0]] + wts[names[1]]
    joint = cii.joint_noise_spectra(a, both, rms, 11, plan["id"], 300)
    np.testing.assert_allclose(joint["union"], joint[names[0]] + joint[names[1]], rtol=1e-9,
                               atol=1e-12 * np.abs(joint["union"]).max())
    own = cii.noise_spectra(a, wts[names[0]], rms, 11, *cii.region_names(plan["id"], names[0]), 300)
    ratio = np.std(joint[names[0]], axis=0) / np.std(own, axis=0)
    assert 0.85 < np.median(ratio) < 1.15  # 300 draws: ~4 % per channel
    batch = cii.joint_noise_spectra(a, {names[1]: wts[names[1]], names[0]: wts[names[0]]}, rms, 11, plan["id"],
                                    [7, 8])
    np.testing.assert_allclose(batch[names[0]], joint[names[0]][7:9], rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------------------
# acceptance: beam-correlated noise and pulls against the truth
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def noise_survey():
    """Per region of 12 mock galaxies (3 seeds): MC errors, empty-sky scatter, pulls.

    Empty-sky fluxes: the noiseless signal of the region plus the mock's
    own noise (``alma_cube(noise=True) - alma_cube(noise=False)``)
    extracted with the SAME weights shifted to 48 other positions (the mock
    noise is periodic, so shifts wrap), fitted like the data.
    """
    rows, spec_rows = [], []
    for seed in SEEDS:
        for plan in mock.plan_survey(dict(CFG, seed=seed)):
            sig = mock.alma_cube(plan, noise=False)
            noise = mock.alma_cube(plan, noise=True) - sig
            a = _alma_from(plan, sig + noise)
            a_sig, a_noise = _alma_from(plan, sig), _alma_from(plan, noise)
            masks, w = _make_masks(plan)
            wts = cii.reproject_masks(masks, w, a)
            rms = cii.estimate_channel_rms(a, cii.signal_free_mask(a, wts), plan["z"])
            truth_map, _ = mock.cii_truth_map(plan)
            for name in masks:
                comp, reg = cii.region_names(plan["id"], name)
                res = cii.mc_cii(a, wts[name], plan["z"], comp, reg, seed=5, n_mc=60, rms=rms)
                fixed = cii.mc_cii(a, wts[name], plan["z"], comp, reg, seed=5, n_mc=60, rms=rms, kinematics="fixed")
                s0 = cii.extract_cii(a_sig, wts[name], plan["z"]).flux_jy
                empty = np.array([
                    cii.extract_cii(a_noise, np.roll(wts[name], (dy, dx), axis=(0, 1)), plan["z"]).flux_jy
                    for dy in range(0, 64, 9) for dx in range(0, 64, 9) if dx or dy
                ])
                spec = res.spectrum
                kw = {"err": res.channel_err, "init": res.nominal.params}
                emp_fixed = cii.fit_realisations(spec, s0 + empty, 1, fix_kinematics=True, **kw)
                snr = res.flux / res.flux_err
                emp_free = cii.fit_realisations(spec, s0 + empty, 1, **kw) if snr >= 8 else np.array([np.nan])
                naive = cii.analytic_errors(a, wts[name], rms)["naive"]
                naive_flux = cii.fit_cii(spec.velocity, spec.flux_jy, err=naive, fix_kinematics=True,
                                         init=res.nominal.params).flux_err
                truth = float((wts[name] * truth_map).sum())
                rows.append({
                    "id": plan["id"], "seed": seed, "region": name, "snr": snr,
                    "pull": (res.flux - truth) / res.flux_err,
                    "mc": res.flux_err, "mc_fixed": fixed.flux_err,
                    "emp_fixed": np.std(emp_fixed, ddof=1),
                    "emp_free": np.std(emp_free, ddof=1) if emp_free.size > 1 else np.nan,
                    "naive_fixed": naive_flux, "omega": a.beam_area_pix,
                })
                mc_noise = res.realisations - spec.flux_jy
                spec_rows.append({"emp": np.std(empty, axis=0, ddof=1).mean(),
                                  "mc": np.std(mc_noise, axis=0, ddof=1).mean(),
                                  "naive": np.nanmean(naive)})
    return pd.DataFrame(rows), pd.DataFrame(spec_rows)


def test_noise_spectra_match_empty_sky(noise_survey):
    """Per-channel scatter of the extracted noise: MC vs empty-sky apertures vs naive."""
    _, spec = noise_survey
    ratio = spec["emp"] / spec["mc"]
    assert np.sqrt(np.mean(ratio**2)) == pytest.approx(1.0, abs=0.1)
    assert ratio.between(0.7, 1.4).all()


def test_mc_sigma_matches_empty_sky_scatter(noise_survey):
    """Acceptance: the quoted MC sigma matches the empty-sky scatter (<~25 %);
    the naive per-pixel error is too small by ~sqrt(beam area in pixels)."""
    df, _ = noise_survey
    r_fixed = df["emp_fixed"] / df["mc_fixed"]
    assert np.sqrt(np.mean(r_fixed**2)) == pytest.approx(1.0, abs=0.25)
    assert r_fixed.between(0.5, 2.0).all()
    hi = df[df["snr"] >= 8]
    assert len(hi) >= 10
    r_free = hi["emp_free"] / hi["mc"]  # the pipeline's quoted sigma (free fit)
    assert np.sqrt(np.mean(r_free**2)) == pytest.approx(1.0, abs=0.25)
    assert r_free.between(0.6, 1.6).all()
    # naive (independent pixels): too small by about sqrt(beam area in pixels)
    r_naive = df["emp_fixed"] / df["naive_fixed"]
    assert (r_naive > 3).all()
    scaled = r_naive / np.sqrt(df["omega"])
    assert 0.6 < np.sqrt(np.mean(scaled**2)) < 1.7


def test_pulls_against_truth(noise_survey):
    df, _ = noise_survey
    assert len(df) >= 20
    assert 0.8 <= df["pull"].std(ddof=1) <= 1.25
    assert abs(df["pull"].mean()) < 0.5


def test_analytic_acf_error_tracks_mc(noise_survey, plans):
    """The autocorrelation-based analytic error agrees with the MC (matched filter)."""
    plan = plans[2]
    a = _alma_from(plan, mock.alma_cube(plan))
    masks, w = _make_masks(plan)
    wts = cii.reproject_masks(masks, w, a)
    sf = cii.signal_free_mask(a, wts)
    rms = cii.estimate_channel_rms(a, sf, plan["z"])
    rho = cii.noise_autocorrelation(a, sf, plan["z"])
    model_area = cii.kernel_correlation_area(cii.beam_kernel(a))
    assert rho.sum() == pytest.approx(model_area, rel=0.25)  # mock noise = white (x) beam
    for name in masks:
        comp, reg = cii.region_names(plan["id"], name)
        noise = cii.noise_spectra(a, wts[name], rms, 2, comp, reg, 200)
        errs = cii.analytic_errors(a, wts[name], rms, rho)
        assert np.mean(errs["acf"]) == pytest.approx(np.mean(noise.std(axis=0)), rel=0.2)
        assert np.mean(errs["naive"]) < 0.3 * np.mean(errs["acf"])


# ---------------------------------------------------------------------------
# one galaxy end to end, with a mask file
# ---------------------------------------------------------------------------
def test_measure_galaxy_from_files(alma_file, tmp_path):
    plan, path = alma_file
    masks, w = _make_masks(plan)
    mpath = tmp_path / f"{plan['id']}.fits"
    _write_masks(mpath, masks, w)
    tab, spectra = cii.measure_galaxy(path, mpath, None, plan["id"], plan["z"], seed=4, n_mc=30)
    assert list(tab.columns) == list(cii.CII_COLUMNS)
    assert set(zip(tab["component"], tab["region"])) == {
        (f"{plan['id']}_a", "ISM"), (f"{plan['id']}_a", "CGM"), (f"{plan['id']}_b", "ISM"), (f"{plan['id']}_b", "CGM")}
    factor = 1e-23 * tab["nu_obs_hz"].to_numpy() / ins.C_KMS
    assert (tab["flux"] / tab["flux_jykms"]).to_numpy() == pytest.approx(factor)
    assert (tab["err_naive_jykms"] < tab["flux_jykms_err"] / 2).all()
    assert tab.loc[~tab["detected"], "upper_limit"].notna().all()
    lf = cii.cii_line_flux_rows(tab)
    assert (lf["line"] == "CII").all() and (lf["flux_dustcorr"] == lf["flux"]).all()
    st = cii.spectra_table(spectra, plan["id"])
    assert len(st) == 4 * mock.ALMA_NCHAN
    # same seed -> identical
    tab2, _ = cii.measure_galaxy(path, mpath, None, plan["id"], plan["z"], seed=4, n_mc=30)
    pd.testing.assert_frame_equal(tab, tab2)


# ---------------------------------------------------------------------------
# [C II] / Ha table
# ---------------------------------------------------------------------------
def test_cii_ratio_table():
    cii_in = {("g1", "g1", "ISM"): (2e-17, 2e-18), ("g1", "g1", "CGM"): (1e-17, 5e-18)}
    ha = pd.DataFrame({
        "id": ["g1"] * 3, "component": ["g1"] * 3, "region": ["ISM", "CGM", "ISM"], "line": ["HA", "HA", "HB"],
        "flux_dustcorr": [1e-16, 2e-17, 9.0], "flux_dustcorr_err": [1e-17, 2e-18, 9.0],
    })
    balmer = pd.DataFrame({"id": ["g1", "g1"], "component": ["g1", "g1"], "region": ["ISM", "CGM"],
                           "ratio": ["BALMER", "BALMER"], "log_value": [np.log10(4.0), np.log10(3.0)],
                           "limit": ["none", "none"]})
    t = cii.cii_ratio_table(cii_in, ha, balmer)
    assert list(t.columns)[:9] == ["id", "component", "region", "cii_flux", "cii_flux_err", "detected",
                                   "cii_ha", "cii_ha_err", "delta_balmer"]
    ism = t[t.region == "ISM"].iloc[0]
    cgm = t[t.region == "CGM"].iloc[0]
    assert ism["detected"] and ism["cii_ha"] == pytest.approx(0.2)
    assert ism["cii_ha_err"] == pytest.approx(0.2 * np.sqrt(0.1**2 + 0.1**2))
    assert not cgm["detected"]  # S/N = 2 < 3: 3-sigma limit
    assert cgm["cii_ha"] == pytest.approx(3 * 5e-18 / 2e-17) and np.isnan(cgm["cii_ha_err"])
    assert ism["delta_balmer"] == pytest.approx(np.log10(3 / 4)) == cgm["delta_balmer"]
    assert not ism["delta_balmer_limit"]
    # linear Balmer decrements as a dict, Ha as a dict
    t2 = cii.cii_ratio_table(cii_in, {k: (1e-16, 1e-17) for k in cii_in}, {("g1", "g1", "ISM"): 4.0})
    assert t2["delta_balmer"].isna().all() and t2["delta_balmer_limit"].all()


# ---------------------------------------------------------------------------
# [C II] extent (mask variants 4r_cii, cii_3sigma)
# ---------------------------------------------------------------------------
def _gaussian_source_cube(plan, sigma_src, noise_jy=0.0, seed=0):
    """The mock ALMA grid of ``plan`` holding a circular Gaussian [C II] source at the galaxy position."""
    hdr, freqs = mock.alma_geometry(plan)
    w = WCS(fits.Header(hdr))
    bmaj, bmin, bpa = plan["alma"]["beam_arcsec_deg"]
    f = 2 * np.sqrt(2 * np.log(2))
    s2 = sigma_src**2 + bmaj * bmin / f**2  # circularised beam
    n = mock.ALMA_NPIX
    yy, xx = np.mgrid[:n, :n]
    ra, dec = w.pixel_to_world_values(xx, yy)
    r2 = ((ra - plan["ra"]) * np.cos(np.deg2rad(plan["dec"])) * 3600) ** 2 + ((dec - plan["dec"]) * 3600) ** 2
    img = np.exp(-0.5 * r2 / s2)
    nu = ins.cii_observed_ghz(plan["z"]) * 1e9
    v = ins.C_KMS * (1 - freqs / nu)
    spec = np.exp(-0.5 * (v / 100.0) ** 2) * 1e-3
    data = spec[:, None, None] * img[None]
    if noise_jy:
        data = data + np.random.default_rng(seed).normal(0, noise_jy, data.shape)
    return cii.AlmaCube("memory", plan["id"], data, w, freqs, bmaj, bmin, bpa, plan["alma"]["pixscale"],
                        fits.Header())


@pytest.mark.parametrize("sigma_src", [0.1, 0.25])
def test_cii_half_light_radius_is_beam_deconvolved(plans, sigma_src):
    """A Gaussian source: the deconvolved half-light radius is sigma sqrt(2 ln 2) (its FWHM / 2)."""
    plan = next(p for p in plans if not p["merger"])
    alma = _gaussian_source_cube(plan, sigma_src)
    hl = cii.cii_half_light_radius(alma, plan["z"], [("", (plan["ra"], plan["dec"]))])
    assert hl["r_arcsec"] == pytest.approx(sigma_src * np.sqrt(2 * np.log(2)), rel=0.03)
    assert hl["r_kpc"] / hl["r_arcsec"] == pytest.approx(6.4, rel=0.1)  # kpc/" at z ~ 4.4-5.7


def test_cii_contour_region_and_errors(plans):
    plan = next(p for p in plans if not p["merger"])
    alma = _gaussian_source_cube(plan, 0.3, noise_jy=2e-4)
    pos = [("", (plan["ra"], plan["dec"]))]
    region, rms = cii.cii_contour_region(alma, plan["z"], pos, nsigma=3.0)
    mom0 = cii.moment0(alma, plan["z"])
    assert region.any() and np.all(mom0[region] > 3 * rms)
    # the rms is the moment-0 noise of the injected white noise (channels within +-300 km/s)
    nchan = int(np.sum(np.abs(alma.velocity(plan["z"])) <= 300.0))
    dv = mock.ALMA_DV_KMS
    assert rms == pytest.approx(2e-4 * dv * np.sqrt(nchan), rel=0.1)
    # only the region connected to the galaxy: a 10-sigma blob far away is not in it
    far = alma.data.copy()
    far[:, 5:9, 5:9] += 50 * 2e-4
    blob = dataclasses.replace(alma, data=far)
    region2, _ = cii.cii_contour_region(blob, plan["z"], pos, nsigma=3.0)
    assert not region2[5:9, 5:9].any()
    with pytest.raises(cii.NoCiiExtent, match="no \\[C II\\] emission above 3 sigma"):
        empty = dataclasses.replace(alma, data=alma.data - _gaussian_source_cube(plan, 0.3).data)
        cii.cii_contour_region(empty, plan["z"], pos, nsigma=3.0)
    with pytest.raises(cii.NoCiiExtent, match="unresolved"):
        cii.cii_half_light_radius(_gaussian_source_cube(plan, 0.0, noise_jy=2e-5), plan["z"], pos)
    with pytest.raises(cii.NoCiiExtent, match="detected at only"):
        cii.cii_half_light_radius(empty, plan["z"], pos)


def _gauss_map(cov, w, n, flux=1.0, center=(0.0, 0.0)):
    """Point-sampled Gaussian [flux per pixel] with sky covariance ``cov`` [(east, north), arcsec^2]."""
    yy, xx = np.mgrid[0:n, 0:n]
    ra, dec = w.pixel_to_world_values(xx, yy)
    ra0, dec0 = w.wcs.crval
    e = (ra - ra0) * np.cos(np.deg2rad(dec0)) * 3600 - center[0]
    nn = (dec - dec0) * 3600 - center[1]
    d = np.stack([e, nn], -1)
    q = np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d)
    pix = 0.1**2
    return flux * pix * np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))


def _rotated_wcs(n, rotation_deg, pix=0.1):
    """TAN WCS of an n x n grid of ``pix``" pixels, rotated by ``rotation_deg`` (east left at 0)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [(n + 1) / 2.0] * 2
    t = np.deg2rad(rotation_deg)
    w.wcs.cd = (pix / 3600) * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    return w


@pytest.mark.parametrize("rotation_deg", [0.0, 37.0])
@pytest.mark.parametrize("shift_dex", [0.0, 0.3])
def test_transfer_matrix_undoes_the_beam_spill(rotation_deg, shift_dex):
    """[C II] = (own [C II]/Ha) x Ha in each region, seen through the beam: T^-1 gives back each region's [C II].

    The raw [C II]/Ha CGM - ISM difference is biased high by the beam (> +0.1
    dex); after the correction it is the injected one to < 0.002 dex, for a
    rotated IFU grid too.
    """
    from astropy.convolution import convolve_fft

    n, f = 61, 2 * np.sqrt(2 * np.log(2))
    w = _rotated_wcs(n, rotation_deg)
    beam, psf = (0.36, 0.28, 25.0), 0.19
    c_psf = (psf / f) ** 2 * np.eye(2)
    # Ha at the IFU resolution: a compact source plus an extended halo
    parts = [(np.eye(2) * 0.05**2, 1.0, (0.0, 0.0)), (np.eye(2) * 0.3**2, 0.6, (0.05, -0.03))]
    ha = sum(_gauss_map(c + c_psf, w, n, fl, c0) for c, fl, c0 in parts)
    r = np.hypot(*np.meshgrid(np.arange(n) - (n - 1) / 2, np.arange(n) - (n - 1) / 2)) * 0.1
    masks = {"ISM": r < 0.2, "CGM": (r >= 0.2) & (r < 0.9)}
    ratio = {"ISM": 0.5, "CGM": 0.5 * 10**shift_dex}
    native = sum(ratio[k] * np.where(m, ha, 0.0) for k, m in masks.items())
    w.array_shape = (n, n)
    seen = convolve_fft(native, cii.matching_kernel(beam, psf, w), boundary="fill", fill_value=0.0)
    measured = pd.DataFrame({"component": "g", "region": list(masks), "flux": [seen[m].sum() for m in masks.values()],
                             "flux_err": 0.01, "upper_limit": np.nan})
    names, t = cii.transfer_matrix(ha, masks, w, beam, psf)
    assert names == ["ISM", "CGM"] and t[0, 0] < 1 and t[1, 0] > 0.05  # ISM light spills into the CGM mask
    out = cii.spill_corrected(measured, names, t, "g").set_index("region")
    h = {k: ha[m].sum() for k, m in masks.items()}
    raw = np.log10(out.loc["CGM", "flux"] / h["CGM"]) - np.log10(out.loc["ISM", "flux"] / h["ISM"])
    fixed = np.log10(out.loc["CGM", "flux_native"] / h["CGM"]) - np.log10(out.loc["ISM", "flux_native"] / h["ISM"])
    assert raw > shift_dex + 0.1
    assert fixed == pytest.approx(shift_dex, abs=0.002)
    assert (out["flux_native_err"] > out["flux_err"]).all()  # the inversion propagates (and enlarges) the errors


@pytest.mark.parametrize("rotation_deg", [0.0, 37.0])
def test_matching_kernel_covariance_on_a_rotated_grid(rotation_deg):
    """The kernel's second moments, mapped to the sky through the WCS, are C_beam - C_psf."""
    n, f = 41, 2 * np.sqrt(2 * np.log(2))
    w = _rotated_wcs(n, rotation_deg)
    w.array_shape = (n, n)
    beam, psf = (0.40, 0.25, 60.0), 0.19
    k = cii.matching_kernel(beam, psf, w)
    c = (np.array(k.shape) - 1) / 2
    yy, xx = np.mgrid[: k.shape[0], : k.shape[1]]
    d = np.stack([xx - c[1], yy - c[0]])
    cov_pix = np.einsum("ij,aij,bij->ab", k, d, d)
    jac = 3600 * w.wcs.cd  # (east, north) [arcsec] per pixel (x, y): intermediate x grows with RA
    cov_sky = jac @ cov_pix @ jac.T
    pa = np.deg2rad(beam[2])
    maj, mnr = np.array([np.sin(pa), np.cos(pa)]), np.array([np.cos(pa), -np.sin(pa)])
    want = ((beam[0] / f) ** 2 * np.outer(maj, maj) + (beam[1] / f) ** 2 * np.outer(mnr, mnr)
            - (psf / f) ** 2 * np.eye(2))
    np.testing.assert_allclose(cov_sky, want, atol=2e-4)


def test_native_resolution_replaces_cii_fluxes_only_where_corrected():
    rows = pd.DataFrame({"flux": [2.0, 2.0], "flux_err": [0.2] * 2, "upper_limit": [np.nan, 0.6],
                         "flux_dustcorr": [2.0] * 2, "flux_dustcorr_err": [0.2] * 2,
                         "flux_native": [3.0, np.nan], "flux_native_err": [0.3, np.nan],
                         "upper_limit_native": [np.nan, 0.9]})
    out = cii.native_resolution(rows)
    assert out["flux"].tolist() == [3.0, 2.0] and out["flux_dustcorr"].tolist() == [3.0, 2.0]
    assert out["flux_err"].tolist() == [0.3, 0.2]
    assert rows["flux"].tolist() == [2.0, 2.0]  # input untouched
    assert cii.native_resolution(rows.drop(columns=["flux_native"])).equals(rows.drop(columns=["flux_native"]))


# ---------------------------------------------------------------------------
# simulations
# ---------------------------------------------------------------------------
def test_sim_profiles_analytic():
    n, pix = 161, 0.2
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx - 80, yy - 80) * pix
    ha = np.exp(-r / 1.0)
    prof, summ = cii.sim_profiles(0.5 * ha, ha, pix)
    assert summ["ratio_inner"] == pytest.approx(0.5) and summ["ratio_outer"] == pytest.approx(0.5)
    assert np.allclose(prof["ratio_norm"].dropna(), 1.0)
    assert prof.loc[np.isclose(prof["r_kpc"], 1.5), "ratio_norm"].item() == pytest.approx(1.0)
    # [C II] more extended than Ha: rising normalised profile, outer > inner
    prof2, summ2 = cii.sim_profiles(np.exp(-r / 2.0), ha, pix)
    assert summ2["ratio_outer"] > summ2["ratio_inner"] and summ2["delta_log"] > 0
    assert np.all(np.diff(prof2["ratio_norm"].dropna()) > 0)
    assert summ2["r_drop_kpc"] == pytest.approx(10.5, abs=0.6)  # exp(-(r-1.5)/2) = 1e-2 at r ~ 10.7
    _, summ3 = cii.sim_profiles(np.exp(-r / 20.0), ha, pix)
    assert summ3["r_drop_kpc"] == 10.0  # never drops: default


def test_mock_sim_maps_and_tables(tmp_path):
    sims = mock.mock_sim_maps(seed=2, n=4, outdir=tmp_path)
    assert [s["sim"] for s in sims] == ["synthsim01", "synthsim02", "synthsim03", "synthsim04"]
    assert all("SYNTHETIC" in s["label"] for s in sims)
    back = cii.read_sim_maps(tmp_path / "synthsim02.fits")
    assert "SYNTHETIC" in back["label"] and back["pixscale_kpc"] == sims[1]["pixscale_kpc"]
    np.testing.assert_allclose(back["cii"], sims[1]["cii"], rtol=1e-6)
    with fits.open(tmp_path / "synthsim02.fits") as h:
        assert h[0].header["MOCK"] is True
    prof, summ = cii.sim_tables(sims)
    assert list(prof.columns[:3]) == ["sim", "r_kpc", "ratio_norm"]
    assert list(summ.columns[:3]) == ["sim", "ratio_inner", "ratio_outer"]
    assert len(summ) == 4 and np.isfinite(summ[["ratio_inner", "ratio_outer"]].to_numpy()).all()
    again = mock.mock_sim_maps(seed=2, n=4)
    np.testing.assert_array_equal(again[0]["cii"], sims[0]["cii"])


# ---------------------------------------------------------------------------
# Fig. 6
# ---------------------------------------------------------------------------
def test_plot_fig6(tmp_path):
    from ismcgm.plots.fig6_cii import plot_fig6

    rows = []
    galaxies = [("mock01", ["mock01_a", "mock01_b"]), ("mock02", ["mock02"]), ("mock03", ["mock03"])]
    for i, (gid, comps) in enumerate(galaxies):
        for comp in comps:
            for reg, val, det in (("ISM", 0.3 + 0.1 * i, True), ("CGM", 0.5 + 0.1 * i, i != 2)):
                rows.append({"id": gid, "component": comp, "region": reg, "cii_flux": 1e-17, "cii_flux_err": 1e-18,
                             "detected": det, "cii_ha": val, "cii_ha_err": 0.05 if det else np.nan,
                             "delta_balmer": [0.1, -0.2, np.nan][i], "delta_balmer_limit": i == 2})
    df = pd.DataFrame(rows)
    sims = mock.mock_sim_maps(seed=1, n=3)
    prof, summ = cii.sim_tables(sims)
    pdf, png = tmp_path / "fig6.pdf", tmp_path / "fig6.png"
    plot_fig6(df, summ, pdf, png, synthetic=True, sim_profiles=prof)
    assert pdf.stat().st_size > 1000 and png.stat().st_size > 1000
    plot_fig6(df, None, tmp_path / "b.pdf", tmp_path / "b.png", synthetic=False)
    assert (tmp_path / "b.png").exists()
