"""The README's quick-start lines and `.ci/run` agree (issue 20).

`.ci/run` must run exactly the README's test line (read between the
`<!-- test-command -->` markers) and turn pytest's exit code 5 into a failure;
both quick-start lines must install into the checkout's `.venv/`, never into
the system Python (PEP 668).
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI_RUN = REPO / ".ci" / "run"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def readme_line(name, text=None):
    """The one command line inside the README's ```bash block between <!-- name --> markers."""
    text = (REPO / "README.md").read_text() if text is None else text
    blocks = re.findall(rf"^<!-- {name} -->\n```bash\n(.*?)^```\n<!-- /{name} -->$", text, re.S | re.M)
    assert len(blocks) == 1, f"README.md needs exactly one <!-- {name} --> ... <!-- /{name} --> bash block"
    lines = [ln for ln in blocks[0].splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 1, f"expected one command line in the {name} block, got {lines}"
    return lines[0]


def ci_run(repo, *args):
    return subprocess.run(["bash", str(repo / ".ci" / "run"), *args], capture_output=True, text=True,
                          cwd=repo, timeout=60)


def test_ci_run_prints_the_readme_test_line():
    proc = ci_run(REPO, "--print")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == readme_line("test-command") + "\n"


@pytest.mark.parametrize("name,tail", [("run-command", ".venv/bin/snakemake --cores all"),
                                       ("test-command", ".venv/bin/pytest")])
def test_readme_lines_install_into_the_checkout_venv(name, tail):
    line = readme_line(name)
    steps = [s.strip() for s in line.split("&&")]
    assert steps[0] == "python3 -m venv .venv", line
    assert re.fullmatch(r"\.venv/bin/pip install -e (\.|'\.\[test\]')", steps[1]), line
    assert steps[-1] == tail, line
    # nothing may call a bare pip/snakemake/pytest (that would be the system's)
    for step in steps[1:]:
        assert step.startswith(".venv/bin/"), step


def test_readme_lines_share_the_install_path():
    run, test = readme_line("run-command"), readme_line("test-command")
    assert run.split("&&")[0] == test.split("&&")[0]
    assert run.split("&&")[1].replace(" -e .", " -e '.[test]'") == test.split("&&")[1]


@pytest.mark.parametrize("exit_code,expected", [(0, 0), (3, 3), (5, 1)])
def test_ci_run_executes_the_readme_line_and_its_exit_code(tmp_path, exit_code, expected):
    """A copy of .ci/run beside a README whose test line is a stand-in: it runs that line itself."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(CI_RUN, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(
        "# x\n\n<!-- test-command -->\n```bash\n"
        f"echo ran > marker.txt && exit {exit_code}\n"
        "```\n<!-- /test-command -->\n")
    proc = ci_run(tmp_path)
    assert (tmp_path / "marker.txt").read_text() == "ran\n"
    assert proc.returncode == expected, proc.stderr
    if exit_code == 5:
        assert "collected no tests" in proc.stderr


def test_ci_run_fails_without_the_markers(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(CI_RUN, tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text("# x\n\n```bash\npytest\n```\n")
    proc = ci_run(tmp_path)
    assert proc.returncode != 0
    assert "test-command" in proc.stderr


def test_readme_test_line_lints_before_pytest():
    """CI lints the workflow (snakemake --lint via .ci/lint.py, snakefmt --check) before the tests (issue 14)."""
    steps = [s.strip() for s in readme_line("test-command").split("&&")]
    assert steps[2:] == [".venv/bin/python .ci/lint.py", ".venv/bin/snakefmt --check .", ".venv/bin/pytest"]
    assert (REPO / ".ci" / "lint.py").is_file()
