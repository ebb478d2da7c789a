"""Emission lines (the default line list) and the grating names the workflow uses.

Every module of the project takes line names and rest wavelengths from here;
the setups (gratings, instruments) and their line-spread functions live in
the registry :mod:`ismcgm.instruments`, re-exported here as ``GRATINGS`` /
``get_grating`` / ``Grating``.  The constants below are the default of the
config's line list (``lines:``, schema default); :func:`use_lines` makes a
config's list the list of the process.

Line names (used in tables, FITS extension names and config) are
``OII3728`` (the [O II] 3726,3729 doublet sum), ``HB``, ``OIII4959``,
``OIII5007``, ``NII6548``, ``HA``, ``NII6583``, ``SII6716``, ``SII6731`` and
``CII`` ([C II] 158 um, ALMA).

Rest wavelengths are vacuum (NIRSpec convention), from SPEC section 0; a
setup in air (MUSE) has its cube axis converted to vacuum by its reader.
"""

from __future__ import annotations

from .instruments import C_KMS, SETUPS, Setup, get_setup  # noqa: F401  (C_KMS re-exported)

#: rest frequency of [C II] 158 um [GHz]
CII_REST_GHZ = 1900.5369

#: Rest-frame vacuum wavelengths [Angstrom] of the individual transitions.
TRANSITIONS = {
    "OII3726": 3727.092,
    "OII3729": 3729.875,
    "HB": 4862.683,
    "OIII4959": 4960.295,
    "OIII5007": 5008.240,
    "NII6548": 6549.86,
    "HA": 6564.61,
    "NII6583": 6585.27,
    "SII6716": 6718.29,
    "SII6731": 6732.67,
}

#: The optical lines reported by the project and the transitions they are
#: made of, with the flux fraction each transition carries.  ``OII3728`` is
#: the doublet sum with [O II] 3726/3729 = 1 (SPEC section 5).
LINES = {
    "OII3728": (("OII3726", 0.5), ("OII3729", 0.5)),
    "HB": (("HB", 1.0),),
    "OIII4959": (("OIII4959", 1.0),),
    "OIII5007": (("OIII5007", 1.0),),
    "NII6548": (("NII6548", 1.0),),
    "HA": (("HA", 1.0),),
    "NII6583": (("NII6583", 1.0),),
    "SII6716": (("SII6716", 1.0),),
    "SII6731": (("SII6731", 1.0),),
}

#: Flux-weighted effective rest wavelength of each reported line [Angstrom].
LINE_WAVELENGTHS = {
    name: sum(TRANSITIONS[t] * w for t, w in parts) for name, parts in LINES.items()
}

#: Fixed flux ratios tied in the fit: ``line -> (reference line, ratio)``.
TIED_RATIOS = {
    "OIII4959": ("OIII5007", 1.0 / 3.0),
    "NII6548": ("NII6583", 1.0 / 3.0),
}

#: All line names, in wavelength order, plus the ALMA line (today's default list).
OPTICAL_LINES = tuple(LINES)
ALL_LINES = OPTICAL_LINES + ("CII",)

#: Lines the ratios (SPEC 7), the dust correction and the redshift check are defined with:
#: every line list must keep them.
REQUIRED_LINES = ("OII3728", "HB", "OIII5007", "HA", "NII6583")


def line_list() -> dict:
    """The current line list in the config form of ``lines:`` (name -> transitions, fractions, tied)."""
    out = {}
    for name, parts in LINES.items():
        entry = {"transitions": {t: TRANSITIONS[t] for t, _ in parts}, "fractions": [w for _, w in parts]}
        if name in TIED_RATIOS:
            entry["tied"] = {"to": TIED_RATIOS[name][0], "ratio": TIED_RATIOS[name][1]}
        out[name] = entry
    return out


def check_line_list(spec: dict) -> str | None:
    """What is wrong with a ``lines:`` config (one phrase), or None."""
    missing = [n for n in REQUIRED_LINES if n not in spec]
    if missing:
        return f"the list lacks {', '.join(missing)} (needed by the ratios, the dust correction and the z check)"
    for name, entry in spec.items():
        n = len(entry["transitions"])
        fr = entry.get("fractions")
        if fr is not None and (len(fr) != n or abs(sum(fr) - 1.0) > 1e-9):
            return f"lines.{name}.fractions must give one fraction per transition, summing to 1"
        tied = entry.get("tied")
        if tied and (tied["to"] not in spec or tied["to"] == name or tied["to"] in {
                k for k, e in spec.items() if e.get("tied")}):
            return f"lines.{name}.tied.to = {tied['to']!r} must be another, untied line of the list"
    return None


def use_lines(spec: dict | None) -> None:
    """Make ``spec`` (config ``lines:``, :func:`line_list` form) the line list of this process.

    The module's dictionaries are updated in place, so every module that
    imported them sees the new list; the default config reproduces today's
    values exactly.  Transitions of equal fraction when ``fractions`` is left out.
    """
    if not spec:
        return
    problem = check_line_list(spec)
    if problem:
        raise ValueError(problem)
    transitions, lines, tied = {}, {}, {}
    for name, entry in spec.items():
        trans = entry["transitions"]
        fr = entry.get("fractions") or [1.0 / len(trans)] * len(trans)
        transitions.update({t: float(w) for t, w in trans.items()})
        lines[name] = tuple((t, float(f)) for t, f in zip(trans, fr))
        if entry.get("tied"):
            tied[name] = (entry["tied"]["to"], float(entry["tied"]["ratio"]))
    for target, new in ((TRANSITIONS, transitions), (LINES, lines), (TIED_RATIOS, tied)):
        target.clear()
        target.update(new)
    LINE_WAVELENGTHS.clear()
    LINE_WAVELENGTHS.update({name: sum(TRANSITIONS[t] * w for t, w in parts) for name, parts in LINES.items()})


#: A setup of the registry (:class:`ismcgm.instruments.Setup`); "grating" is the name the
#: workflow's tables and wildcards use for it.
Grating = Setup

#: The setups the project knows (:data:`ismcgm.instruments.SETUPS`).
GRATINGS = SETUPS


def get_grating(name: str) -> Setup:
    """Return the setup called ``name`` (case-insensitive; :func:`ismcgm.instruments.get_setup`)."""
    return get_setup(name)


def observed_wavelength_um(line: str, z: float) -> float:
    """Observed (vacuum) wavelength [micron] of ``line`` at redshift ``z``."""
    return LINE_WAVELENGTHS[line] * (1.0 + z) * 1e-4


def lines_in_grating(grating: str | Grating, z: float, margin_um: float = 0.01) -> list[str]:
    """Optical lines whose every transition lies inside the grating coverage.

    ``margin_um`` keeps a line window clear of the band edge.
    """
    g = grating if isinstance(grating, Grating) else get_grating(grating)
    out = []
    for name, parts in LINES.items():
        waves = [TRANSITIONS[t] * (1.0 + z) * 1e-4 for t, _ in parts]
        if all(g.covers(w, margin_um) for w in waves):
            out.append(name)
    return out


def cii_observed_ghz(z: float) -> float:
    """Observed frequency [GHz] of [C II] 158 um at redshift ``z``."""
    return CII_REST_GHZ / (1.0 + z)
