#!/usr/bin/env python3
"""The compute of a finished workflow run, redone in one Python process without Snakemake.

    python bench/inprocess.py RUN_DIR [--workdir DIR] [--keep]

``RUN_DIR`` is the ``--directory`` of a run made with ``--skip-script-cleanup``
(``bench/run_default.sh`` does this): Snakemake then keeps, under
``RUN_DIR/.snakemake/scripts/``, the script of every job it ran with the job's
inputs, outputs and params.  This program executes those same scripts (so the
same package functions on the same inputs) one after the other in this one
process, in the order the jobs started (a job starts only once its inputs
exist, so that order respects the DAG), in an empty scratch directory.
Nothing is scheduled, no interpreter is started and no Snakemake job runs.

Timing: the imports every script makes are done once, first, and timed
apart ("imports"); the time of each script after that is its compute.  It
prints the compute per rule, the total compute and the imports.  Afterwards
the scratch directory's results are compared with ``RUN_DIR``'s by
``bench/compare_outputs.py`` (byte for byte), which shows the measured
compute is the same analysis.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

PREAMBLE_END = "######## snakemake preamble end #########"


def job_scripts(run_dir: Path) -> list[Path]:
    """The kept job scripts of ``run_dir``, in the order the jobs started."""
    scripts = sorted((run_dir / ".snakemake" / "scripts").glob("*.py"), key=lambda p: p.stat().st_mtime_ns)
    if not scripts:
        raise SystemExit(f"inprocess: no job scripts under {run_dir}/.snakemake/scripts "
                         "(run snakemake with --skip-script-cleanup)")
    return scripts


def rule_of(script: Path) -> str:
    """Rule name of a kept script: ``tmpXXXXXX.<script name>.py`` -> the script's name."""
    return re.sub(r"^tmp[^.]*\.", "", script.stem)


def body_imports(text: str) -> str:
    """The import statements of a job script's body (after the Snakemake preamble)."""
    body = text.split(PREAMBLE_END, 1)[-1]
    tree = ast.parse(body)
    return "\n".join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def run_all(scripts: list[Path]) -> tuple[float, dict[str, list[float]]]:
    """Import everything once (timed), then execute every script; (import seconds, rule -> compute seconds)."""
    texts = [(s, s.read_text()) for s in scripts]
    preamble_path = texts[0][1].split("\n", 2)[1].split(";", 2)[1]  # sys.path.extend([...]) of the run
    t0 = time.perf_counter()
    exec(preamble_path, {"sys": sys})
    import snakemake.script  # noqa: F401  (the preamble unpickles a snakemake.script object)
    for imports in dict.fromkeys(body_imports(t) for _, t in texts):
        exec(compile(imports, "<imports>", "exec"), {"__name__": "__imports__"})
    t_imports = time.perf_counter() - t0
    compute = defaultdict(list)
    for script, text in texts:
        code = compile(text, str(script), "exec")
        t0 = time.perf_counter()
        try:
            exec(code, {"__name__": "__main__", "__file__": str(script)})
        except SystemExit as exc:
            raise SystemExit(f"inprocess: {script.name} exited with {exc.code}") from None
        compute[rule_of(script)].append(time.perf_counter() - t0)
    return t_imports, compute


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary scratch directory")
    a = ap.parse_args(argv)
    run_dir = a.run_dir.resolve()
    scripts = job_scripts(run_dir)
    work = a.workdir.resolve() if a.workdir else Path(tempfile.mkdtemp(prefix="inprocess-"))
    work.mkdir(parents=True, exist_ok=True)
    # Snakemake creates every output's directory before a job starts: the same directories, up front
    for d in (run_dir / "results").rglob("*"):
        if d.is_dir():
            (work / d.relative_to(run_dir)).mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    t_imports, compute = run_all(scripts)
    total = sum(sum(v) for v in compute.values())
    print(f"in-process compute of {run_dir} ({len(scripts)} job scripts, one process, scratch {work}):")
    for rule, d in sorted(compute.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {rule:24s} {len(d):5d} jobs {sum(d):8.2f} s")
    print(f"imports (once): {t_imports:.2f} s")
    print(f"in-process compute: {total:.2f} s")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import compare_outputs

    same = compare_outputs.compare(run_dir, work)
    if not a.workdir and not a.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return same


if __name__ == "__main__":
    sys.exit(main())
