"""Glue for the thin scripts under ``workflow/scripts/``.

:func:`run` sends logging to the rule's log file, runs the script body and,
on bad input (:class:`ismcgm.errors.InputError`, and only that) prints the
one-line error (galaxy, file, fix) and exits 1; any other exception is a bug
and keeps its traceback and exit status.  In both cases the outputs that may
have been written are removed, so that a failed job never leaves a file that
looks complete.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from .errors import InputError
from .instrument import use_lines


def _remove_outputs(snakemake) -> None:
    for path in snakemake.output:
        if os.path.isfile(path):
            os.unlink(path)


def run(snakemake, main) -> None:
    """Run ``main()`` for a Snakemake ``script:`` with logging and clean failure."""
    log = snakemake.log[0] if len(snakemake.log) else None
    handlers = [logging.StreamHandler(sys.stderr)]
    if log:
        os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    logging.captureWarnings(True)
    try:
        lines = (getattr(snakemake, "config", None) or {}).get("lines")
        if lines:
            use_lines(lines)  # config ``lines``: the line list of this job (default: today's constants)
        main()
    except InputError as exc:
        _remove_outputs(snakemake)
        message = str(exc).splitlines()[0]
        if log:
            with open(log, "a") as fh:
                traceback.print_exc(file=fh)
        print(f"ERROR: {message}", file=sys.stderr)
        sys.exit(1)
    except BaseException:
        _remove_outputs(snakemake)
        raise
