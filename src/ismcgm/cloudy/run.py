"""Running Cloudy: the decks, the line-list file, running the executable and reading its line list.

Deck syntax
-----------
The commands follow Cloudy's manual (Hazy 1, C17) and were checked against
the command parsers of the Cloudy source (``parse_save.cpp``,
``parse_stop.cpp``, ``parse_element.cpp``, ``parse_metal.cpp``,
``parse_radius.cpp``, ``parse_commands.cpp``):

``table SED "file"``
    The incident continuum, a user-supplied two-column SED file (energy in
    Ryd, flux) of the BPASS v2.2.1 224 Myr constant-SFR, 0.5 Zsun
    population (not shipped; ``sed_file`` in the config names it).
``Q(H) = x``
    log of the number of H-ionising photons per second, derived from
    log U(1 kpc) as above.  Alternatively (config ``luminosity``) the
    source is normalised by ``nuL(nu) = x at e Ryd`` (e.g. L_UV = 1e11
    Lsun at 1500 A = 0.6075 Ryd); log U is then only nominal.
``radius x``
    log10 of the distance of the illuminated face [cm] (open geometry).
``hden x``
    log10 n_H [cm^-3], constant within the slab.
``metals 0.5 linear`` and ``element abundance oxygen x`` / ``nitrogen``
    0.5 Zsun for the other metals.  Cloudy multiplies *every* metal
    abundance, including those set by ``element abundance``, by the
    ``metals`` scale factor (``abundances.cpp``), so O and N are written
    as ``log(X/H) - log10(metals)``; the resulting log(O/H) and log(N/H)
    are stated in a comment above them.
``stop neutral column density 22``
    log N(H0) [cm^-2] at which the calculation stops (paper Appendix A).
``stop temperature off``
    Cloudy otherwise stops when T_e < 4000 K, before N(H0) = 1e22 is
    reached; ``cosmic rays background`` keeps the neutral gas physical.
``iterate to convergence``
    iterate until the optical depths converge.
``save last line list "<name>.lines" "<line list>" absolute no hash``
    On the last iteration, write the absolute intensities of the lines in
    the line-list file: a header ``#lineslist<TAB>label<TAB>label...`` and
    one row ``iteration N<TAB>value<TAB>value...`` (``column`` instead
    writes one ``label<TAB>value`` line per line, also understood by
    :func:`parse_line_list`).

Line names and labels
---------------------
Project line names are those of :mod:`ismcgm.instrument`.  Cloudy labels
(``"O  3 5006.84A"``: 4-character species, air wavelength for > 2000 A in
C17) are matched to project lines by species and wavelength within a
relative tolerance of 5e-4, so both air and vacuum labels (C17, C23) are
understood.  ``OII3728`` is the sum of [O II] 3726 and 3729.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .config import DEFAULT_CLOUDY_CONFIG, merged_config, unique_models

#: Cloudy 17 labels of the lines saved by the decks, per project line
#: (air wavelengths, as printed by Cloudy 17).  Sums where several.
CLOUDY_LINE_LABELS = {
    "HB": ("H  1 4861.33A",),
    "HA": ("H  1 6562.81A",),
    "OII3728": ("O  2 3726.03A", "O  2 3728.81A"),
    "OIII4959": ("O  3 4958.91A",),
    "OIII5007": ("O  3 5006.84A",),
    "NII6548": ("N  2 6548.05A",),
    "NII6583": ("N  2 6583.45A",),
    "CII": ("C  2 157.636m",),
}


#: Relative wavelength tolerance when matching Cloudy labels.
LABEL_WAVELENGTH_RTOL = 5e-4


#: Text of the message of a Cloudy run that did not finish.
_UNFINISHED = "the Cloudy run did not finish; rerun it"


def deck_text(model: Mapping) -> str:
    """Cloudy input deck of one model (see the module docstring for the syntax).

    Parameters
    ----------
    model : mapping
        One entry of :func:`model_grid_spec`.

    Returns
    -------
    str
        The deck, ending with a newline.
    """
    m = merged_config(None) | dict(model)
    name = m["name"]
    metals = float(m["metals"])
    log_metals = math.log10(metals)
    lines = [
        f"title ismcgm {name}",
        "# written by ismcgm.cloudy.write_deck (syntax: Cloudy 17, Hazy 1)",
        f"# slab at r = {m['r_kpc']:g} kpc, density law {m['density_law']}, N/H variant {m['nh_variant']}",
        f"# nominal log U at the illuminated face = {m['log_u']:.4f}",
        "# ---- incident continuum",
        f"# SED: {m['sed']}",
        f'table SED "{m["sed_file"]}"',
    ]
    lum = m.get("luminosity")
    if lum:
        lines.append(f"nuL(nu) = {float(lum['log_nu_lnu']):.4f} at {float(lum['at_ryd']):.4f} Ryd")
    else:
        lines.append("# log Q(H) = log U(1 kpc) + log10(4 pi (1 kpc)^2 n_H(1 kpc) c)")
        lines.append(f"Q(H) = {m['log_qh']:.4f}")
    lines += [
        "# ---- geometry: log10(r / cm) of the illuminated face (open geometry)",
        f"radius {m['log_radius_cm']:.4f}",
        f"# ---- gas: n_H = {m['n_h']:.6g} cm^-3, constant within the slab",
        f"hden {m['log_hden']:.4f}",
        f"# ---- abundances: other metals x {metals:g}; Cloudy also scales O and N by the",
        "# metals factor, so they are entered as log(X/H) - log10(metals), giving",
        f"# log(O/H) = {m['log_oh']:.2f}, log(N/H) = {m['log_nh']:.2f}",
        f"metals {metals:g} linear",
        f"element abundance oxygen {m['log_oh'] - log_metals:.4f}",
        f"element abundance nitrogen {m['log_nh'] - log_metals:.4f}",
    ]
    if m.get("cosmic_rays_background", True):
        lines.append("cosmic rays background")
    lines += [
        "# ---- stopping: neutral hydrogen column density N(H0) [log cm^-2]",
        f"stop neutral column density {math.log10(m['stop_column_h0']):g}",
    ]
    if m.get("stop_temperature_off", True):
        lines.append("stop temperature off")
    lines += [
        "iterate to convergence",
        "# ---- output: absolute intensities of the lines listed in the line-list file",
        f'save last line list "{name}.lines" "{m["line_list_file"]}" absolute no hash',
    ]
    return "\n".join(lines) + "\n"


def write_deck(model: Mapping, path) -> Path:
    """Write the Cloudy input deck of ``model`` to ``path`` (``<name>.in``).

    Parameters
    ----------
    model : mapping
        One entry of :func:`model_grid_spec`.
    path : str or path-like
        Output file; parent folders are created.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(deck_text(model))
    return path


def write_all_decks(models: Sequence[Mapping], outdir) -> list[Path]:
    """Write one deck per distinct model name and the line-list file into ``outdir``.

    Returns
    -------
    list of pathlib.Path
        The decks (``<outdir>/<name>.in``); run each with ``cloudy -r <name>``
        inside ``outdir`` (the SED file must be there or on Cloudy's path).
    """
    outdir = Path(outdir)
    runs = unique_models(models)
    if runs:
        write_line_list_file(outdir / runs[0].get("line_list_file", DEFAULT_CLOUDY_CONFIG["line_list_file"]))
    return [write_deck(m, outdir / f"{m['name']}.in") for m in runs]


def write_line_list_file(path) -> Path:
    """Write the Cloudy line-list file the decks save (one label a line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ["# lines saved by the ismcgm decks (Cloudy 17 labels)"]
    for labels in CLOUDY_LINE_LABELS.values():
        body.extend(labels)
    path.write_text("\n".join(body) + "\n")
    return path


def check_finished(main_output) -> None:
    """Raise ValueError unless Cloudy's main output says "Cloudy exited OK"."""
    path = Path(main_output)
    text = path.read_text(errors="replace") if path.exists() else ""
    if "Cloudy exited OK" not in text:
        raise InputError(None, path, f"{_UNFINISHED} (no 'Cloudy exited OK' in the main output)", "rerun that Cloudy model")


def parse_line_list(path, main_output=None) -> dict[str, float]:
    """Read the output of Cloudy's ``save line list`` command.

    Parameters
    ----------
    path : str or path-like
        The ``.lines`` file.  Row format: a ``#lineslist`` header with one
        tab-separated label per line, then one row per saved iteration,
        ``iteration N<TAB>value...``; the last row is used.  Column format
        (``column`` keyword): ``iteration N`` then ``label<TAB>value`` lines.
    main_output : str or path-like, optional
        Cloudy's main output; if given and it lacks "Cloudy exited OK", a
        ValueError is raised.

    Returns
    -------
    dict
        Cloudy label (stripped) -> intensity.
    """
    if main_output is not None:
        check_finished(main_output)
    path = Path(path)
    rows = [ln.rstrip("\n") for ln in path.read_text().splitlines()]
    rows = [ln for ln in rows if ln.strip() and not set(ln.strip()) <= {"#"}]
    header = next((ln for ln in rows if ln.startswith("#") and "\t" in ln), None)
    data = [ln for ln in rows if not ln.startswith("#")]
    if header is not None:
        out = _parse_row_format(header, data)
    else:
        out = _parse_column_format(data)
    if not out:
        raise InputError(None, path, f"no line intensities found; {_UNFINISHED}", "rerun that Cloudy model")
    return out


def _parse_row_format(header: str, data: list[str]) -> dict[str, float]:
    labels = [s.strip() for s in header.split("\t")[1:]]
    values = [ln.split("\t") for ln in data if ln.lower().startswith("iteration")]
    values = [v for v in values if len(v) == len(labels) + 1]
    if not values:
        return {}
    return {lab: float(v) for lab, v in zip(labels, values[-1][1:])}


def _parse_column_format(data: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for ln in data:
        if ln.lower().startswith("iteration"):
            out = {}  # a new iteration: keep only the last one
            continue
        parts = ln.split("\t")
        if len(parts) >= 2:
            out[parts[0].strip()] = float(parts[-1])
    return out


_LABEL_RE = re.compile(r"^(.{4})\s*([0-9]*\.?[0-9]+)\s*([Amc])")


def label_key(label: str) -> tuple[str, float] | None:
    """``("O3", 5006.84)`` for ``"O  3 5006.84A"``: species and wavelength [A]."""
    match = _LABEL_RE.match(label)
    if match is None:
        return None
    species = match.group(1).replace(" ", "").upper()
    scale = {"A": 1.0, "m": 1e4, "c": 1e8}[match.group(3)]
    return species, float(match.group(2)) * scale


def _find_label(raw_keys: list[tuple[str, tuple[str, float]]], wanted: str) -> str | None:
    species, wl = label_key(wanted)
    best, best_d = None, np.inf
    for label, (sp, w) in raw_keys:
        d = abs(w - wl) / wl
        if sp == species and d < LABEL_WAVELENGTH_RTOL and d < best_d:
            best, best_d = label, d
    return best


def project_line_intensities(raw: Mapping[str, float]) -> dict[str, float]:
    """Project lines (:data:`MODEL_LINES`) from Cloudy labels -> intensity.

    Each Cloudy label of :data:`CLOUDY_LINE_LABELS` is matched to the raw
    label of the same species with the nearest wavelength (relative
    difference < :data:`LABEL_WAVELENGTH_RTOL`).  A line whose components
    are not all found (or would share one raw label) is NaN.
    """
    keys = [(lab, k) for lab, k in ((lab, label_key(lab)) for lab in raw) if k is not None]
    out = {}
    for line, labels in CLOUDY_LINE_LABELS.items():
        found = [_find_label(keys, lab) for lab in labels]
        ok = all(found) and len(set(found)) == len(found)  # one Cloudy line per component
        out[line] = float(sum(raw[f] for f in found)) if ok else np.nan
    return out


log = logging.getLogger(__name__)


def _sed_copy_target(sed_file: str | None, workdir: Path) -> Path | None:
    if not sed_file or Path(sed_file).is_absolute():
        return None
    return workdir / sed_file


def run_cloudy(executable: str, name: str, deck, line_list, out, lines, sed_file: str | None = None,
               scratch=None) -> tuple[Path, Path]:
    """Run Cloudy on one deck and move ``<name>.out`` and ``<name>.lines`` to ``out`` and ``lines``.

    The run happens in a fresh scratch folder (default: ``.run_<name>`` next
    to ``out``) holding the deck, the line-list file and, when ``sed_file``
    is a relative path to an existing file, a copy of the SED at the same
    relative path (otherwise Cloudy must find it on its data path).  The
    command is ``shlex.split(executable) + ['-r', name]``: Cloudy reads
    ``<name>.in`` and writes ``<name>.out``; the deck's ``save last line
    list`` writes ``<name>.lines``.  On success the two files are moved into
    place.  The scratch folder is removed in every case; after a failure the
    end of Cloudy's main output is in the job's log.

    Raises
    ------
    ValueError
        If the executable is missing, exits non-zero, or the run did not
        finish ("Cloudy exited OK" absent) or wrote no line list.
    """
    out, lines = Path(out), Path(lines)
    work = Path(scratch) if scratch is not None else out.parent / f".run_{name}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:  # no scratch folder survives, a failed run included (the end of Cloudy's output goes to the log)
        shutil.copyfile(deck, work / f"{name}.in")
        shutil.copyfile(line_list, work / Path(line_list).name)
        target = _sed_copy_target(sed_file, work)
        if target is not None:
            if Path(sed_file).is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sed_file, target)
            else:
                log.info("SED file %s not found here; Cloudy must find it on its data path", sed_file)
        cmd = shlex.split(executable) + ["-r", name]
        log.info("running %s in %s", " ".join(cmd), work)
        _run_in(cmd, work, name, out, lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out, lines


def _run_in(cmd, work: Path, name: str, out: Path, lines: Path) -> None:
    """Run Cloudy in ``work`` and move its ``.out`` and ``.lines`` onto ``out`` and ``lines``."""
    try:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    except OSError as exc:
        raise InputError(None, "config", f"cannot run Cloudy executable {cmd[0]!r} ({exc})",
                         "set cloudy.executable to the path of Cloudy's cloudy.exe, or to null to use a packaged grid"
                         ) from None
    for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if text.strip():
            log.info("Cloudy %s:\n%s", stream, text.strip()[-4000:])
    main_out = work / f"{name}.out"
    try:
        if proc.returncode != 0:
            raise InputError(None, main_out, f"Cloudy exited with status {proc.returncode} for model {name}",
                             "see the job's log")
        check_finished(main_out)
        saved = work / f"{name}.lines"
        if not saved.is_file():
            raise InputError(None, saved, f"Cloudy wrote no line list for model {name}", "check the deck's save command")
    except InputError:
        if main_out.is_file():
            log.info("end of Cloudy's %s.out:\n%s", name, main_out.read_text(errors="replace")[-4000:])
        raise
    for src, dst in ((saved, lines), (main_out, out)):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
