"""Malformed inputs across the chain: each run must exit non-zero with one line
naming the galaxy (or config key), the file and the fix, before or instead of
writing the affected output."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from ismcgm import align as al
from ismcgm import mock
from tests.conftest import run_snakemake

GID = "badgal"


@pytest.fixture(scope="module")
def good_data(tmp_path_factory, test_mock_cfg):
    """A valid one-galaxy 'real' sample built from a SYNTHETIC mock galaxy."""
    root = tmp_path_factory.mktemp("good")
    plan = next(p for p in mock.plan_survey(test_mock_cfg) if not p["merger"] and "g395m" in p["ifu"]["gratings"])
    plan = dict(plan, id=GID)
    row = mock.sample_rows([plan], root=str(root / "data"))[0]
    (root / "data" / GID).mkdir(parents=True)
    for g in plan["ifu"]["gratings"]:
        mock.write_cube(plan, g, row[f"cube_{g}"])
    mock.write_image(plan, row["image"])
    mock.write_alma(plan, row["alma_cube"])
    return root, row


def _case(tmp_path, good_data, target, edit_row=None, edit_files=None, config="", dry=False):
    src, row = good_data
    data = tmp_path / "data"
    shutil.copytree(src / "data", data)
    row = {k: (str(v).replace(str(src / "data"), str(data)) if isinstance(v, str) else v) for k, v in row.items()}
    rows = [row]
    if edit_row:
        rows = edit_row(row)
    if edit_files:
        edit_files(row)
    table = tmp_path / "samples.tsv"
    pd.DataFrame(rows).to_csv(table, sep="\t", index=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"samples: {table}\nmc:\n  n_realisations: 4\n  chunk_size: 4\ncii:\n  n_realisations: 4\n{config}")
    proc = run_snakemake(tmp_path, "--cores", "1", *(["-n"] if dry else []), target, configfiles=(cfg,), check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if "-- fix:" in ln]
    assert len(set(lines)) == 1, out[-4000:]
    assert not (tmp_path / target).exists()
    return lines[0]


ALIGN = f"results/alignment/{GID}.csv"
MASKS = f"results/masks/default/{GID}.fits"
CII = f"results/cii/default/{GID}.csv"


def _rewrite(path, fn):
    with fits.open(path) as hdul:
        hdul = fn(fits.HDUList([h.copy() for h in hdul]))
        hdul.writeto(path, overwrite=True)


def _drop(ext):
    return lambda h: fits.HDUList([x for x in h if x.name != ext])


def _set(ext, key, value):
    def fn(h):
        h[ext].header[key] = value
        return h
    return fn


def _del(ext, *keys):
    def fn(h):
        for k in keys:
            del h[ext].header[k]
        return h
    return fn


def _data(ext, f):
    def fn(h):
        h[ext].data = f(h[ext].data)
        return h
    return fn


CASES = {
    # sample table
    "missing column": dict(target=ALIGN, edit_row=lambda r: [{k: v for k, v in r.items() if k != "z"}],
                           words=["missing column", "z"]),
    "duplicate id": dict(target=ALIGN, edit_row=lambda r: [r, r], words=["duplicate", GID]),
    "id with slash": dict(target=ALIGN, edit_row=lambda r: [dict(r, id="a/b")], words=["a/b"]),
    "id with dotdot": dict(target=ALIGN, edit_row=lambda r: [dict(r, id="a..b")], words=["a..b"]),
    "nonexistent file": dict(target=ALIGN, edit_row=lambda r: [dict(r, image="nowhere_i2d.fits")],
                             words=[GID, "nowhere_i2d.fits"]),
    # cubes
    "cube without SCI": dict(target=ALIGN, files=lambda r: _rewrite(r["cube_g235m"], _drop("SCI")),
                             words=[GID, "g235m", "SCI"]),
    "cube without ERR": dict(target=ALIGN, files=lambda r: _rewrite(r["cube_g235m"], _drop("ERR")),
                             words=[GID, "g235m", "ERR"]),
    "cube wrong BUNIT": dict(target=ALIGN, files=lambda r: _rewrite(r["cube_g235m"], _set("SCI", "BUNIT", "Jy")),
                             words=[GID, "g235m", "BUNIT"]),
    "cube no spectral axis": dict(target=ALIGN,
                                  files=lambda r: _rewrite(r["cube_g235m"], _set("SCI", "CTYPE3", "LINEAR")),
                                  words=[GID, "g235m", "spectral"]),
    "cube all NaN": dict(target=ALIGN, files=lambda r: _rewrite(r["cube_g235m"], _data("SCI", lambda d: d * np.nan)),
                         words=[GID, "g235m"]),
    "cube ERR <= 0": dict(target=ALIGN, files=lambda r: _rewrite(r["cube_g235m"], _data("ERR", lambda d: d * 0)),
                          words=[GID, "g235m", "ERR"]),
    # image
    "image without WCS": dict(target=ALIGN,
                              files=lambda r: _rewrite(r["image"], _del("SCI", "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2")),
                              words=[GID, "i2d", "WCS"]),
    "image no overlap": dict(target=ALIGN, files=lambda r: _rewrite(r["image"], _set("SCI", "CRVAL1", 10.0)),
                             words=[GID, "i2d"]),
    # ALMA
    "alma without beam": dict(target=CII, files=lambda r: _rewrite(r["alma_cube"], _del("PRIMARY", "BMAJ", "BMIN")),
                              words=[GID, "cii_cube", "BMAJ"]),
    # region file
    "unparsable region file": dict(target=MASKS, region="this is not a region file ((\n",
                                   words=[GID, "exclude.reg"]),
    # config
    "config bad type": dict(target=ALIGN, config="fit:\n  detect_snr: high\n", words=["fit.detect_snr"]),
    "config unknown variant": dict(target=ALIGN, config="variants: [nosuch]\n", words=["nosuch"]),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, good_data):
    case = CASES[name]
    edit_row = case.get("edit_row")
    if "region" in case:
        reg = tmp_path / "exclude.reg"
        reg.write_text(case["region"])
        edit_row = lambda r: [dict(r, exclude_region=str(reg))]  # noqa: E731
    line = _case(tmp_path, good_data, case["target"], edit_row=edit_row, edit_files=case.get("files"),
                 config=case.get("config", ""))
    for w in case["words"]:
        assert w in line, (w, line)


# ---------------------------------------------------------------------------
# issue 15: checks that fail before any job (the functions common.smk calls),
# data checks of the align job, Monte Carlo chunks; each case asserts one line
# naming the galaxy (or key), the file and the fix, and nothing under results/.
# ---------------------------------------------------------------------------
from pathlib import Path  # noqa: E402

from ismcgm import inputcheck  # noqa: E402
from ismcgm.errors import InputError  # noqa: E402
from ismcgm.io import read_chunks, read_cube, read_image  # noqa: E402
from ismcgm.workflow_config import (  # noqa: E402
    ConfigError,
    check_config,
    check_samples,
    main as yaml_check_main,
    read_yaml_config,
)
from tests.conftest import REPO  # noqa: E402

SAMPLES_SCHEMA = REPO / "workflow" / "schemas" / "samples.schema.yaml"
CONFIG_SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _one_line(msg, *words):
    assert "\n" not in msg and msg.count("-- fix:") == 1, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def _table_case(tmp_path, good_data, edit_row=None, edit_files=None, text=None):
    """check_samples (what common.smk runs before any job) on an edited copy; returns the one-line error."""
    src, row = good_data
    if edit_files:  # only then copy the FITS files
        data = tmp_path / "data"
        shutil.copytree(src / "data", data)
        row = {k: (v.replace(str(src / "data"), str(data)) if isinstance(v, str) else v) for k, v in row.items()}
        edit_files(row)
    table = tmp_path / "samples.tsv"
    if text is not None:
        table.write_text(text(row) if callable(text) else text)
    else:
        pd.DataFrame(edit_row(row) if edit_row else [row]).to_csv(table, sep="\t", index=False)
    with pytest.raises(ConfigError) as err:
        check_samples(str(table), SAMPLES_SCHEMA, warn=lambda m: None)
    assert not (tmp_path / "results").exists()
    return str(err.value), table


def _truncate(path, where):
    """Cut ``path`` inside the data of extension ``where`` (byte offset 1000 into it)."""
    with fits.open(path) as hdul:
        loc = hdul[where].fileinfo()["datLoc"]
    Path(path).write_bytes(Path(path).read_bytes()[: loc + 1000])


def _tsv(rows):
    return "".join("\t".join(map(str, r)) + "\n" for r in rows)


def _merger(r):
    return dict(r, merger=True, components=f"{r['ra'] + 0.5 / 3600:.8f},{r['dec']:.8f};"
                                           f"{r['ra'] - 0.5 / 3600:.8f},{r['dec']:.8f}")


def _moved(arcsec):
    """A cube 20" north of the galaxy: another galaxy's (every extension's WCS)."""
    def fn(h):
        for e in ("SCI", "ERR", "DQ"):
            h[e].header["CRVAL2"] += arcsec / 3600.0
        return h
    return fn


def _swap_g395(r):
    return dict(r, cube_g395h=r["cube_g395m"], cube_g395m="")


TABLE_CASES = {
    # columns
    "misspelt optional column": dict(edit_row=lambda r: [{**r, "exclude_regions": ""}],
                                     words=["exclude_regions", "known columns", "exclude_region"]),
    "duplicate z column": dict(text=lambda r: _tsv([["z", *r], [r["z"], *r.values()]]),
                               words=["'z'", "more than once"]),
    "unknown column": dict(edit_row=lambda r: [{**r, "redshift_err": 0.01}], words=["redshift_err", "known columns"]),
    "empty table": dict(text="", words=["empty"]),
    "header-only table": dict(text=lambda r: _tsv([list(r)]), words=["no galaxy rows"]),
    "comma-separated table": dict(text=lambda r: ",".join(r) + "\n" + ",".join(map(str, r.values())) + "\n",
                                  words=["comma", "tabs"]),
    "ragged row": dict(text=lambda r: _tsv([list(r), [*r.values(), "extra", "cells"]]), words=["tab-separated"]),
    # cells
    "merger maybe": dict(edit_row=lambda r: [dict(r, merger="maybe")], words=[GID, "merger", "'maybe'", "True or False"]),
    "components not numbers": dict(edit_row=lambda r: [dict(_merger(r), components="149.8,abc;149.9,2.1")],
                                   words=[GID, "components", "abc", "ra_a,dec_a"]),
    "z not a number": dict(edit_row=lambda r: [dict(r, z="five")], words=[GID, "column z"]),
    "merger with one component": dict(edit_row=lambda r: [dict(_merger(r), components=f"{r['ra']},{r['dec']}")],
                                      words=[GID, "two component"]),
    # contradictory rows
    "both G395 cubes": dict(edit_row=lambda r: [dict(r, cube_g395h=r["cube_g395m"])], words=[GID, "both", "cube_g395h"]),
    "components on a non-merger": dict(edit_row=lambda r: [dict(_merger(r), merger=False)],
                                       words=[GID, "components", "merger is False"]),
    "merger component named like a galaxy": dict(
        edit_row=lambda r: [dict(_merger(r), id="g"), dict(r, id="g_a")], words=["galaxy g:", "'g_a'", "rename"]),
    # cube headers
    "G395M cube in cube_g395h (GRATING)": dict(edit_row=lambda r: [_swap_g395(r)],
                                               words=[GID, "g395m_s3d", "GRATING = 'G395M'", "cube_g395m"]),
    "G395M cube in cube_g395h (no GRATING)": dict(
        edit_row=lambda r: [_swap_g395(r)], files=lambda r: _rewrite(r["cube_g395h"] or r["cube_g395m"],
                                                                     _del("PRIMARY", "GRATING")),
        words=[GID, "channel width", "cube_g395m"]),
    "swapped G235M/G395M (GRATING)": dict(
        edit_row=lambda r: [dict(r, cube_g235m=r["cube_g395m"], cube_g395m=r["cube_g235m"])],
        words=[GID, "GRATING", "move it to column"]),
    "swapped G235M/G395M (no GRATING)": dict(
        edit_row=lambda r: [dict(r, cube_g235m=r["cube_g395m"], cube_g395m=r["cube_g235m"])],
        files=lambda r: [_rewrite(r[c], _del("PRIMARY", "GRATING", "FILTER")) for c in ("cube_g235m", "cube_g395m")],
        words=[GID, "wavelengths", "swap the paths"]),
    "cube FILTER mismatch": dict(files=lambda r: _rewrite(r["cube_g235m"], _set("PRIMARY", "FILTER", "F290LP")),
                                 words=[GID, "g235m", "FILTER", "F170LP"]),
    "NIRCam file as cube": dict(files=lambda r: _rewrite(r["cube_g235m"], _set("PRIMARY", "INSTRUME", "NIRCAM")),
                                words=[GID, "g235m", "INSTRUME", "NIRSpec"]),
    "CTYPE3 FREQ": dict(files=lambda r: _rewrite(r["cube_g235m"], _set("SCI", "CTYPE3", "FREQ")),
                        words=[GID, "g235m", "CTYPE3 = 'FREQ'", "WAVE"]),
    "CUNIT3 nm on micron values": dict(files=lambda r: _rewrite(r["cube_g235m"], _set("SCI", "CUNIT3", "nm")),
                                       words=[GID, "g235m", "CUNIT3", "set CUNIT3 = 'um'"]),
    # truncated / unreadable files
    "truncated cube (inside ERR)": dict(files=lambda r: _truncate(r["cube_g235m"], "ERR"),
                                        words=[GID, "g235m", "truncated", "re-download"]),
    "truncated cube (inside SCI)": dict(files=lambda r: _truncate(r["cube_g395m"], "SCI"),
                                        words=[GID, "g395m", "truncated"]),
    "truncated image": dict(files=lambda r: _truncate(r["image"], "SCI"), words=[GID, "i2d", "truncated"]),
    "truncated ALMA cube": dict(files=lambda r: _truncate(r["alma_cube"], 0), words=[GID, "cii_cube", "truncated"]),
    "cube not FITS": dict(files=lambda r: Path(r["cube_g235m"]).write_text("not fits\n"),
                          words=[GID, "g235m", "not a readable FITS"]),
    # image units (issue 16): known before any job from the headers
    "HST image in e-/s without PHOTFNU": dict(files=lambda r: _rewrite(r["image"], _set("SCI", "BUNIT", "ELECTRONS/S")),
                                              words=[GID, "i2d", "'ELECTRONS/S'", "PHOTFNU", "PHOTFLAM"]),
    "HST image in counts without EXPTIME": dict(
        files=lambda r: _rewrite(r["image"], lambda h: _set("SCI", "PHOTFNU", 1.2e-7)(_set("SCI", "BUNIT", "COUNTS")(h))),
        words=[GID, "i2d", "'COUNTS'", "EXPTIME"]),
    "image BUNIT not a unit": dict(files=lambda r: _rewrite(r["image"], _set("SCI", "BUNIT", "furlongs")),
                                   words=[GID, "i2d", "BUNIT='furlongs'", "MJy/sr"]),
    # positions
    "galaxy far outside the field": dict(edit_row=lambda r: [dict(r, ra=r["ra"] + 1.0)],
                                         words=[GID, "outside the cube's field", "ra/dec"]),
    "cube of another galaxy": dict(files=lambda r: _rewrite(r["cube_g395m"], _moved(20.0)),
                                   words=[GID, "g395m", "outside the cube's field"]),
    "merger component outside the image": dict(
        edit_row=lambda r: [dict(_merger(r), components=f"{r['ra']},{r['dec']};{r['ra']},{r['dec'] + 0.1}")],
        words=[GID, "i2d", "component b", "components cell"]),
}


@pytest.mark.parametrize("name", list(TABLE_CASES))
def test_bad_table_before_any_job(name, tmp_path, good_data):
    case = TABLE_CASES[name]
    msg, table = _table_case(tmp_path, good_data, case.get("edit_row"), case.get("files"), case.get("text"))
    _one_line(msg, *case["words"])
    assert str(table) in msg or "/data/" in msg  # the sample table or the bad file is named


def test_image_psf_broader_than_ifu_is_a_warning(tmp_path, good_data):
    """Documented choice (README): a warning, not an error -- the data stay usable, at the image resolution."""
    src, row = good_data
    table = tmp_path / "samples.tsv"
    pd.DataFrame([dict(row, image_psf_fwhm=0.3, ifu_psf_fwhm=0.2)]).to_csv(table, sep="\t", index=False)
    seen = []
    check_samples(str(table), SAMPLES_SCHEMA, warn=seen.append)
    assert len(seen) == 1
    _one_line(seen[0], GID, str(table), "image_psf_fwhm", "PSF-matched")


# ---------------------------------------------------------------- config
def _cfg_file(tmp_path, text):
    f = tmp_path / "my.yaml"
    f.write_text(text)
    return f


def _check_cfg(tmp_path, text):
    import yaml

    f = _cfg_file(tmp_path, text)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for k, v in yaml.safe_load(text).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError) as err:
        check_config(cfg, CONFIG_SCHEMA, [REPO / "config.yaml", f])
    return str(err.value), f


CONFIG_CASES = {
    "unsorted mass bins": ("stats:\n  mass_bins: [9.5, 11.0, 10.0]\n", ["stats.mass_bins", "increasing"]),
    "missing cii.sims file": ("cii:\n  sims: [nowhere_sim.fits]\n", ["cii.sims", "nowhere_sim.fits"]),
    "bad max shift": ("alignment:\n  max_shift_arcsec: -1\n", ["alignment.max_shift_arcsec"]),
    "bad type names the file": ("fit:\n  detect_snr: high\n", ["fit.detect_snr"]),
}


@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_bad_config_names_file_and_key(name, tmp_path):
    text, words = CONFIG_CASES[name]
    msg, f = _check_cfg(tmp_path, text)
    _one_line(msg, f"config {f}:", *words)


def test_broken_yaml_names_the_file(tmp_path, capsys):
    f = _cfg_file(tmp_path, "mc:\n  n_realisations: [4\n")
    with pytest.raises(ConfigError) as err:
        read_yaml_config(f)
    _one_line(str(err.value), str(f), "line", "YAML")
    assert yaml_check_main([str(f)]) == 1  # python -m ismcgm.workflow_config my.yaml (README)
    assert str(f) in capsys.readouterr().err


@pytest.mark.e2e
def test_unsorted_mass_bins_stop_the_dry_run(tmp_path):
    """The check runs in common.smk, before any job: a dry run fails with the one line."""
    f = _cfg_file(tmp_path, "stats:\n  mass_bins: [10.0, 9.5]\n")
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", configfiles=(f,), check=False)
    assert proc.returncode != 0
    lines = {ln for ln in (proc.stdout + proc.stderr).splitlines() if "-- fix:" in ln}
    assert len(lines) == 1 and str(f) in lines.pop()
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_bad_cell_stops_the_dry_run(tmp_path, good_data):
    """A cell error surfaces through snakemake (-n) as the one line, before any job."""
    line = _case(tmp_path, good_data, ALIGN, edit_row=lambda r: [dict(r, merger="maybe")], dry=True)
    _one_line(line, GID, "merger", "maybe")


# ---------------------------------------------------------------- data checks of the align job
@pytest.fixture(scope="module")
def good_cubes(good_data):
    src, row = good_data
    from ismcgm.samples import galaxy_gratings

    return [read_cube(row[f"cube_{g}"], GID) for g in galaxy_gratings(pd.Series(row))], read_image(row["image"], GID)


def test_wrong_redshift_is_an_error(good_data, good_cubes):
    row = good_data[1]
    cubes, _ = good_cubes
    assert inputcheck.check_redshift(cubes, row) is None
    with pytest.raises(InputError) as err:
        inputcheck.check_redshift(cubes, dict(row, z=row["z"] + 0.3))
    _one_line(str(err.value), GID, "_s3d.fits", "Halpha", "correct z")


def test_faint_galaxy_redshift_is_a_warning(good_data, good_cubes):
    """No strong line anywhere: the redshift cannot be verified -> a warning, not an error."""
    import dataclasses

    row = good_data[1]
    rng = np.random.default_rng(1)
    noise = [dataclasses.replace(c, sci=rng.normal(0, 0.1, c.sci.shape) * c.err) for c in good_cubes[0]]
    warning = inputcheck.check_redshift(noise, row)
    assert warning and GID in warning and "cannot be verified" in warning


def test_image_without_source_names_the_image(tmp_path, good_data, good_cubes):
    import dataclasses

    image = good_cubes[1]
    noise = dataclasses.replace(image, data=np.random.default_rng(2).normal(0, 1e-3, image.data.shape))
    with pytest.raises(InputError) as err:
        inputcheck.check_image_source(noise, good_data[1])
    _one_line(str(err.value), GID, "i2d", "no source", "this galaxy's")
    inputcheck.check_image_source(image, good_data[1])  # the real one passes


def test_merger_source_check_looks_at_each_component(good_data, good_cubes):
    """A merger's ra/dec is the midpoint between the components, which may hold no light at all."""
    import dataclasses

    image, row = good_cubes[1], dict(good_data[1])
    ny, nx = image.data.shape
    yy, xx = np.indices(image.data.shape)
    offsets = (-8.0, 8.0)  # pixels: the midpoint (the table position) lies between two separated blobs
    blobs = sum(np.exp(-((xx - nx / 2 - d) ** 2 + (yy - ny / 2) ** 2) / (2 * 1.5**2)) for d in offsets)
    data = np.random.default_rng(3).normal(0, 1e-3, image.data.shape) + blobs
    two = dataclasses.replace(image, data=data)
    ra, dec = image.wcs.pixel_to_world_values(nx / 2, ny / 2)
    comps = [image.wcs.pixel_to_world_values(nx / 2 + d, ny / 2) for d in offsets]
    row.update(ra=float(ra), dec=float(dec), merger=True,
               components=";".join(f"{float(a):.8f},{float(b):.8f}" for a, b in comps))
    inputcheck.check_image_source(two, row)  # both components have light: passes
    far = image.wcs.pixel_to_world_values(nx / 2, ny / 2 + 20)
    row["components"] = f"{float(comps[0][0]):.8f},{float(comps[0][1]):.8f};{float(far[0]):.8f},{float(far[1]):.8f}"
    with pytest.raises(InputError) as err:
        inputcheck.check_image_source(two, row)
    _one_line(str(err.value), GID, "i2d", "no source", "component position")


def test_alignment_shift_above_limit(good_data):
    shift = al.Alignment(0.45, 0.1, 0.0)
    with pytest.raises(InputError) as err:
        inputcheck.check_shift(shift, good_data[1], ["c_g235m_s3d.fits"], 0.4)
    _one_line(str(err.value), GID, "c_g235m_s3d.fits", "alignment.max_shift_arcsec")
    inputcheck.check_shift(al.Alignment(0.2, 0.1, 0.0), good_data[1], ["c.fits"], 0.4)


def test_cube_off_the_image_is_an_error(good_data, good_cubes):
    """Another field's cube beside the right one: an error naming it (was a log warning)."""
    import copy
    import dataclasses

    cubes, image = good_cubes
    w = copy.deepcopy(cubes[1].wcs)
    w.wcs.crval = [w.wcs.crval[0] + 0.1, w.wcs.crval[1]]
    other = dataclasses.replace(cubes[1], wcs=w, path="other_g395m_s3d.fits")
    with pytest.raises(InputError) as err:
        al.align([cubes[0], other], image, good_data[1])
    _one_line(str(err.value), GID, "other_g395m_s3d.fits", "does not overlap")


@pytest.mark.e2e
def test_wrong_redshift_fails_the_align_job(tmp_path, good_data):
    line = _case(tmp_path, good_data, ALIGN, edit_row=lambda r: [dict(r, z=r["z"] + 0.3)])
    _one_line(line, GID, "_s3d.fits", "correct z")


# ---------------------------------------------------------------- Monte Carlo chunks
def _chunks(tmp_path, n=2):
    paths = []
    for i in range(n):
        p = tmp_path / f"{GID}_g235m_{i}.parquet"
        pd.DataFrame({"realisation": [2 * i, 2 * i + 1], "flux": [1.0, 2.0]}).to_parquet(p, index=False)
        paths.append(p)
    return paths


CHUNK_CASES = {
    "truncated chunk": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "unreadable"),
    "not parquet": (lambda p: p.write_text("garbage\n"), "unreadable"),
    "empty chunk": (lambda p: pd.DataFrame({"realisation": [], "flux": []}).to_parquet(p, index=False), "empty"),
    "other columns": (lambda p: pd.DataFrame({"x": [1]}).to_parquet(p, index=False), "columns"),
}


@pytest.mark.parametrize("name", list(CHUNK_CASES))
def test_bad_mc_chunk_names_the_chunk(name, tmp_path):
    paths = _chunks(tmp_path)
    assert len(read_chunks(paths)) == 4
    edit, word = CHUNK_CASES[name]
    edit(paths[1])
    with pytest.raises(InputError) as err:
        read_chunks(paths)
    _one_line(str(err.value), str(paths[1]), word, "delete that chunk")
