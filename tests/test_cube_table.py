"""The long cube table (issue 16): ``id, setup, path`` beside the sample table, like the
catalog workflows' ``units.tsv``; the same galaxies as the wide ``cube_<setup>`` columns, and
one-line errors for every malformed table."""

from __future__ import annotations

import pandas as pd
import pytest

from ismcgm import samples
from ismcgm.errors import InputError
from ismcgm.workflow_config import ConfigError, check_config

BASE = dict(z=5.0, logmstar=10.0, ra=150.0, dec=2.0, image="i.fits", image_filter="F444W", image_psf_fwhm=0.15,
            ifu_psf_fwhm=0.2, merger=False)


def _write(tmp_path, wide_cols=None, cube_rows=None, name="cubes.tsv"):
    rows = [dict(id=g, **BASE, **(wide_cols or {}).get(g, {})) for g in ("g1", "g2")]
    table = tmp_path / "samples.tsv"
    pd.DataFrame(rows).to_csv(table, sep="\t", index=False)
    cubes = None
    if cube_rows is not None:
        cubes = tmp_path / name
        cubes.write_text(cube_rows)
    return table, cubes


LONG = "id\tsetup\tpath\ng1\tg235m\ta1.fits\ng1\tg395m\tb1.fits\ng2\tg235m\ta2.fits\ng2\tG395H\tc2.fits\n"


def test_long_table_equals_wide_columns(tmp_path):
    wide = {"g1": {"cube_g235m": "a1.fits", "cube_g395m": "b1.fits"},
            "g2": {"cube_g235m": "a2.fits", "cube_g395h": "c2.fits"}}
    (tmp_path / "w").mkdir()
    (tmp_path / "l").mkdir()
    t_wide, _ = _write(tmp_path / "w", wide)
    t_long, cubes = _write(tmp_path / "l", cube_rows=LONG)
    a = samples.read_sample_table(t_wide)
    b = samples.read_sample_table(t_long, cubes)
    pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)])
    assert samples.galaxy_gratings(b.loc["g2"]) == ["g235m", "g395h"]


@pytest.mark.parametrize("text, words", [
    ("id\tsetup\tpath\ng1\tg235n\ta.fits\n", ["g1", "setup 'g235n' is not a known setup", "g235m"]),
    ("id\tsetup\tpath\ng9\tg235m\ta.fits\n", ["g9", "not in the sample table"]),
    ("id\tsetup\tpath\ng1\tg235m\ta.fits\ng1\tg235m\tb.fits\n", ["g1", "two rows for setup g235m"]),
    ("id\tsetup\tfile\ng1\tg235m\ta.fits\n", ["columns", "id, setup, path"]),
    ("id,setup,path\ng1,g235m,a.fits\n", ["comma-separated"]),
    ("id\tsetup\tpath\n", ["no rows"]),
    ("", ["empty"]),
    ("id\tsetup\tpath\ng1\tg235m\t\n", ["g1", "empty path"]),
    ("id\tsetup\tpath\ng1\tg235m\ta.fits\ng1\tg235h\tb.fits\n", ["g1", "both cube_g235m and cube_g235h"]),
    ("id\tsetup\tpath\ng1\tg235m\ta.fits\n", ["g2", "no cube given"]),
])
def test_bad_long_tables_are_one_line_errors(tmp_path, text, words):
    table, cubes = _write(tmp_path, cube_rows=text)
    with pytest.raises(InputError) as exc:
        samples.read_sample_table(table, cubes)
    msg = str(exc.value)
    assert "\n" not in msg and "-- fix:" in msg, msg
    for w in words:
        assert w in msg, msg


def test_wide_and_long_for_one_galaxy_is_an_error(tmp_path):
    table, cubes = _write(tmp_path, {"g1": {"cube_g235m": "x.fits"}}, cube_rows=LONG)
    with pytest.raises(InputError, match="g1.*also has a cube_g235m cell.*not both"):
        samples.read_sample_table(table, cubes)


def test_config_cubes_key(tmp_path):
    """``cubes`` must name an existing file and needs a real sample table."""
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    schema = repo / "workflow" / "schemas" / "config.schema.yaml"
    base = yaml.safe_load((repo / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="cubes is set but samples is 'mock'"):
        check_config(dict(base, cubes=str(tmp_path / "c.tsv")), schema)
    table, _ = _write(tmp_path)
    with pytest.raises(ConfigError, match="cubes: file .* not found"):
        check_config(dict(base, samples=str(table), cubes=str(tmp_path / "nope.tsv")), schema)
