"""Malformed inputs across the chain: each run must exit non-zero with one line
naming the galaxy (or config key), the file and the fix, before or instead of
writing the affected output."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from ismcgm import mock
from tests.conftest import run_snakemake

GID = "badgal"


@pytest.fixture(scope="module")
def good_data(tmp_path_factory, test_mock_cfg):
    """A valid one-galaxy 'real' sample built from a SYNTHETIC mock galaxy."""
    root = tmp_path_factory.mktemp("good")
    plan = next(p for p in mock.plan_survey(test_mock_cfg) if not p["merger"])
    plan = dict(plan, id=GID)
    row = mock.sample_rows([plan], root=str(root / "data"))[0]
    (root / "data" / GID).mkdir(parents=True)
    for g in plan["ifu"]["gratings"]:
        mock.write_cube(plan, g, row[f"cube_{g}"])
    mock.write_image(plan, row["image"])
    mock.write_alma(plan, row["alma_cube"])
    return root, row


def _case(tmp_path, good_data, target, edit_row=None, edit_files=None, config=""):
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
    proc = run_snakemake(tmp_path, "--cores", "1", target, configfiles=(cfg,), check=False)
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
