"""workflow_script.run: only InputError is bad input (one line, exit 1); any other error keeps its traceback."""

from types import SimpleNamespace

import pytest

from ismcgm.errors import InputError
from ismcgm.workflow_script import run


def _smk(tmp_path):
    out = tmp_path / "out.csv"
    return SimpleNamespace(output=[str(out)], log=[str(tmp_path / "job.log")]), out


def test_input_error_is_one_line_and_exit_1(tmp_path, capsys):
    smk, out = _smk(tmp_path)

    def main():
        out.write_text("partial")
        raise InputError("g1", "cube.fits", "no SCI extension", "give a NIRSpec cube")

    with pytest.raises(SystemExit) as exc:
        run(smk, main)
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "ERROR: galaxy g1: cube.fits: no SCI extension -- fix: give a NIRSpec cube"
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("error", [ValueError("a bug"), KeyError("column"), ZeroDivisionError()])
def test_other_errors_keep_traceback(tmp_path, error):
    smk, out = _smk(tmp_path)

    def main():
        out.write_text("partial")
        raise error

    with pytest.raises(type(error)):
        run(smk, main)
    assert not out.exists()
