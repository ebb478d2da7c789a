"""Photoionisation comparison: Cloudy decks, Cloudy output and packaged grids.

SPEC section 9, paper Sect. 5.2.1 and Appendix A.  A slab (a thin sheet of
gas) has its illuminated face at a distance ``r`` = 1, 5, 10, 15 kpc from a
central source; its hydrogen density is

    n_H(r) = n_H(1 kpc) (r / 1 kpc)^alpha,   n_H(1 kpc) = 100 cm^-3,

with alpha = 0 (``const``), -1.5 (``r-1.5``) or -2 (``r-2``), constant
inside each slab.  log(O/H) = -3.6; log(N/H) = -4.6 everywhere
(``nh_variant='fiducial'``) or -5.1 for r > 1 kpc (``'low_outer'``; the
1 kpc slab keeps -4.6).  Each run stops at N(H0) = 1e22 cm^-2.

Ionisation parameter
--------------------
U(r) = Q(H) / (4 pi r^2 n_H(r) c) (paper eq. A1).  With log U(1 kpc) =
-2.3 (U ~ 5e-3, paper footnote 52) the source emits
``log Q(H) = log U(1 kpc) + log(4 pi (1 kpc)^2 n_H(1 kpc) c)`` and

    log U(r) = log U(1 kpc) - (2 + alpha) log(r / 1 kpc),

i.e. -2.3 - 2 log r (const), -2.3 - 0.5 log r (r^-1.5), -2.3 (r^-2).

Two ways to get line ratios
---------------------------
1. Real Cloudy runs: :func:`write_deck` writes one input deck per model
   and :func:`write_line_list_file` the list of lines it saves; run e.g.
   ``cloudy -r <name>`` in that folder (Cloudy 17 reads ``<name>.in`` and
   writes ``<name>.out``); :func:`parse_line_list` reads the ``save line
   list`` output and :func:`grid_from_cloudy_runs` builds the table.
2. Packaged grids of real Cloudy 17 runs (``ismcgm/data/cloudy/``, see the
   README there for provenance and licences): :func:`grid_from_packaged`
   maps each model onto a grid through log U(r) (the grids are
   plane-parallel at n_H = 100 cm^-3; the optical lines used here are far
   below their critical densities at n_H <= 100 cm^-3, so their ratios
   depend on U and not on n_H).

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

import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ismcgm.ratios import RATIO_DEFINITIONS

# ---------------------------------------------------------------------------
# constants and configuration
# ---------------------------------------------------------------------------

#: 1 kpc [cm].
KPC_CM = 3.0856775814913673e21

#: Speed of light [cm/s].
C_CM_S = 2.99792458e10

#: Case-B Halpha/Hbeta (T = 1e4 K, n_e = 100 cm^-3), as in the dust correction.
CASE_B_HA_HB = 2.86

#: Reference radius of the density laws and of log U [kpc].
R_REF_KPC = 1.0

#: Defaults of the Cloudy comparison (SPEC section 9, paper Appendix A).
DEFAULT_CLOUDY_CONFIG = {
    "radii_kpc": [1, 5, 10, 15],
    # n_H = n_h_1kpc (r / 1 kpc)^alpha [cm^-3]
    "n_h_1kpc": 100.0,
    "density_laws": {"const": 0.0, "r-1.5": -1.5, "r-2": -2.0},
    "log_oh": -3.6,
    "log_nh": -4.6,
    # log N/H of the 'low_outer' variant for r > 1 kpc
    "log_nh_outer": -5.1,
    "stop_column_h0": 1e22,
    # scale factor of all other metals (0.5 Zsun)
    "metals": 0.5,
    "sed": "BPASS v2.2.1, binary, 224 Myr constant SFR, Z = 0.5 Zsun",
    # Cloudy 'table SED' file of that population (supplied by the user)
    "sed_file": "bpass_v2.2.1_constSFR_224Myr_halfsolar.sed",
    "log_u_1kpc": -2.3,
    # optional {"log_nu_lnu": ..., "at_ryd": ...}: normalise by nuL(nu) instead of Q(H)
    "luminosity": None,
    "stop_temperature_off": True,
    "cosmic_rays_background": True,
    "line_list_file": "ismcgm_linelist.dat",
}

#: Names of the two N/H variants.
NH_VARIANTS = ("fiducial", "low_outer")

#: Lines of the model tables, relative to Hbeta.
MODEL_LINES = ("HB", "HA", "OII3728", "OIII4959", "OIII5007", "NII6548", "NII6583", "CII")

#: Ratios of Figs. 5 and 7 (SPEC section 7).
DELTA_RATIOS = ("O3", "O2", "O32", "R23", "N2", "N2O2")

#: Metadata columns of the model tables.
MODEL_COLUMNS = (
    "name",
    "r_kpc",
    "density_law",
    "nh_variant",
    "n_h",
    "log_oh",
    "log_nh",
    "log_u",
    "grid_source",
    "halpha_source",
    "missing",
)

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

#: Packaged grids: key -> file in ``ismcgm/data/cloudy``.
PACKAGED_GRIDS = {
    "hcm_bpass": "hcm_v6.0_C17_BPASS_IMF135_mup300_1myr.dat",
    "hcm_popstar": "hcm_v6.0_C17_POPSTAR_1myr.dat",
    "calabro2023": "calabro2023_cloudy17_bpass_constSF100Myr.csv",
}

#: Grid that provides Halpha/Hbeta (the HCm grids have no Halpha).
HALPHA_GRID = "calabro2023"

#: log n_H of the Calabro et al. (2023) models used [cm^-3].
CALABRO_LOG_DENSITY = 2.0

#: Text of the message of a Cloudy run that did not finish.
_UNFINISHED = "the Cloudy run did not finish; rerun it"


# ---------------------------------------------------------------------------
# model specification
# ---------------------------------------------------------------------------


def merged_config(cfg: Mapping | None = None) -> dict:
    """:data:`DEFAULT_CLOUDY_CONFIG` updated with ``cfg`` (a shallow merge)."""
    out = dict(DEFAULT_CLOUDY_CONFIG)
    out.update(dict(cfg or {}))
    return out


def density(r_kpc, alpha, n_h_1kpc=DEFAULT_CLOUDY_CONFIG["n_h_1kpc"]):
    """Hydrogen density n_H = n_h_1kpc (r / 1 kpc)^alpha [cm^-3]."""
    return n_h_1kpc * (np.asarray(r_kpc, dtype=float) / R_REF_KPC) ** alpha


def log_u_at(r_kpc, alpha, log_u_1kpc=DEFAULT_CLOUDY_CONFIG["log_u_1kpc"]):
    """log U at the illuminated face: log U(1 kpc) - (2 + alpha) log(r / 1 kpc)."""
    return log_u_1kpc - (2.0 + alpha) * np.log10(np.asarray(r_kpc, dtype=float) / R_REF_KPC)


def log_qh_from_u(log_u_1kpc, n_h_1kpc) -> float:
    """log Q(H) [photons/s] giving U(1 kpc) at n_H(1 kpc) (paper eq. A1)."""
    r_cm = R_REF_KPC * KPC_CM
    return float(log_u_1kpc + np.log10(4.0 * np.pi * r_cm**2 * n_h_1kpc * C_CM_S))


def model_name(r_kpc: float, density_law: str, log_nh: float) -> str:
    """Model name, e.g. ``r05_r-1.5_nh-4.6``.

    Both N/H variants share the r = 1 kpc slab, so they share its name.
    """
    if float(r_kpc).is_integer():
        rpart = f"r{int(r_kpc):02d}"
    else:
        rpart = "r" + f"{r_kpc:g}".replace(".", "p")
    return f"{rpart}_{density_law}_nh{log_nh:g}"


def _check_config(cfg: Mapping) -> None:
    radii = list(cfg["radii_kpc"])
    if not radii or min(radii) <= 0:
        raise ValueError("cloudy.radii_kpc must list positive radii in kpc; fix the config")
    if R_REF_KPC not in [float(r) for r in radii]:
        raise ValueError(
            "cloudy.radii_kpc must include 1 kpc, the reference of the Delta log(ratio) profiles; add it to the config"
        )
    if not cfg["density_laws"]:
        raise ValueError("cloudy.density_laws is empty; give at least one {name: alpha}")


def model_grid_spec(cfg: Mapping | None = None) -> list[dict]:
    """All Cloudy models of the comparison (SPEC section 9).

    Parameters
    ----------
    cfg : mapping, optional
        Keys of :data:`DEFAULT_CLOUDY_CONFIG`; missing keys take the default.

    Returns
    -------
    list of dict
        One dict per radius x density law x N/H variant with ``name``,
        ``r_kpc``, ``density_law``, ``alpha``, ``nh_variant``
        ('fiducial' or 'low_outer'), ``n_h`` [cm^-3], ``log_hden``,
        ``log_oh``, ``log_nh``, ``log_u``, ``log_qh``, ``log_radius_cm``,
        ``stop_column_h0`` and the deck settings (``metals``, ``sed``,
        ``sed_file``, ``luminosity``, ``stop_temperature_off``,
        ``cosmic_rays_background``, ``line_list_file``).  The r = 1 kpc model
        appears in both variants with the same name (one run).
    """
    c = merged_config(cfg)
    _check_config(c)
    log_qh = log_qh_from_u(c["log_u_1kpc"], c["n_h_1kpc"])
    models = []
    for variant in NH_VARIANTS:
        for law, alpha in c["density_laws"].items():
            for r in c["radii_kpc"]:
                r = float(r)
                outer = variant == "low_outer" and r > R_REF_KPC
                log_nh = float(c["log_nh_outer"] if outer else c["log_nh"])
                n_h = float(density(r, alpha, c["n_h_1kpc"]))
                models.append(
                    {
                        "name": model_name(r, law, log_nh),
                        "r_kpc": r,
                        "density_law": law,
                        "alpha": float(alpha),
                        "nh_variant": variant,
                        "n_h": n_h,
                        "log_hden": math.log10(n_h),
                        "log_oh": float(c["log_oh"]),
                        "log_nh": log_nh,
                        "log_u": float(log_u_at(r, alpha, c["log_u_1kpc"])),
                        "log_qh": log_qh,
                        "log_radius_cm": math.log10(r * KPC_CM),
                        "stop_column_h0": float(c["stop_column_h0"]),
                        "metals": float(c["metals"]),
                        "sed": c["sed"],
                        "sed_file": c["sed_file"],
                        "luminosity": c["luminosity"],
                        "stop_temperature_off": bool(c["stop_temperature_off"]),
                        "cosmic_rays_background": bool(c["cosmic_rays_background"]),
                        "line_list_file": c["line_list_file"],
                    }
                )
    return models


def unique_models(models: Sequence[Mapping]) -> list[Mapping]:
    """``models`` with one entry per ``name`` (first occurrence): the runs to do."""
    seen, out = set(), []
    for m in models:
        if m["name"] not in seen:
            seen.add(m["name"])
            out.append(m)
    return out


# ---------------------------------------------------------------------------
# decks
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Cloudy output
# ---------------------------------------------------------------------------


def check_finished(main_output) -> None:
    """Raise ValueError unless Cloudy's main output says "Cloudy exited OK"."""
    path = Path(main_output)
    text = path.read_text(errors="replace") if path.exists() else ""
    if "Cloudy exited OK" not in text:
        raise ValueError(f"{path}: {_UNFINISHED} (no 'Cloudy exited OK' in the main output)")


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
        raise ValueError(f"{path}: no line intensities found; {_UNFINISHED}")
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


# ---------------------------------------------------------------------------
# packaged grids
# ---------------------------------------------------------------------------


def packaged_grid_path(grid: str):
    """Traversable of a packaged grid file (:data:`PACKAGED_GRIDS`)."""
    if grid not in PACKAGED_GRIDS:
        raise ValueError(f"unknown Cloudy grid {grid!r}: use one of {', '.join(PACKAGED_GRIDS)}")
    return resources.files("ismcgm").joinpath("data", "cloudy", PACKAGED_GRIDS[grid])


def _read_hcm(text: str) -> pd.DataFrame:
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    names = [s.strip() for s in rows[0].split("\t")]
    values = np.array([[float(x) for x in ln.split("\t")] for ln in rows[1:]])
    raw = pd.DataFrame(values, columns=names)
    return pd.DataFrame(
        {
            "oh12": raw["12+log(O/H)"],
            "log_no": raw["log(N/O)"],
            "log_u": raw["log(U)"],
            "HB": 1.0,
            "OII3728": raw["OII_3727"],
            "OIII5007": raw["OIII_5007"],
            "NII6583": raw["NII_6584"],
        }
    )


def _read_calabro(text) -> pd.DataFrame:
    raw = pd.read_csv(text)
    hb = raw["Hbeta"]
    return pd.DataFrame(
        {
            "log_density": raw["log_density"],
            "metallicity": raw["metallicity"],
            "oh12": raw["OH"],
            "log_u": raw["logU"],
            "HB": 1.0,
            "HA": raw["Halpha"] / hb,
            "OII3728": (raw["OII_3726"] + raw["OII_3729"]) / hb,
            "OIII5007": raw["OIII_5007"] / hb,
            "NII6583": raw["NII_6583"] / hb,
        }
    )


def read_packaged_grid(grid: str = "hcm_bpass") -> pd.DataFrame:
    """A packaged grid with project line names, intensities relative to Hbeta.

    Returns
    -------
    pandas.DataFrame
        HCm grids: ``oh12, log_no, log_u, HB, OII3728, OIII5007, NII6583``.
        Calabro grid: ``log_density, metallicity, oh12, log_u, HB, HA,
        OII3728, OIII5007, NII6583``.
    """
    src = packaged_grid_path(grid)
    if grid == "calabro2023":
        with src.open("r") as fh:
            return _read_calabro(fh)
    return _read_hcm(src.read_text())


def interp_in_log_u(nodes_log_u, values, log_u) -> float:
    """Linear interpolation of ``values`` in log U; NaN outside the nodes."""
    x = np.asarray(nodes_log_u, dtype=float)
    y = np.asarray(values, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    eps = 1e-9
    if not np.isfinite(log_u) or log_u < x[0] - eps or log_u > x[-1] + eps:
        return np.nan
    return float(np.interp(np.clip(log_u, x[0], x[-1]), x, y))


def _node_rows(table: pd.DataFrame, column: str, value: float, what: str) -> pd.DataFrame:
    sel = table[np.isclose(table[column], value, atol=1e-6)]
    if sel.empty:
        nodes = ", ".join(f"{v:g}" for v in np.unique(table[column]))
        raise ValueError(
            f"{what} = {value:g} is not a node of the packaged grid ({nodes}); "
            "the grids are used only at their nodes: change the Cloudy abundances in the config"
        )
    return sel


def _halpha_over_hbeta(calabro: pd.DataFrame, oh12: float, log_u: float) -> tuple[float, str]:
    """Halpha/Hbeta from the Calabro grid where log U overlaps, else Case B."""
    sel = calabro[np.isclose(calabro["log_density"], CALABRO_LOG_DENSITY)]
    metal_nodes = np.unique(sel["oh12"])
    nearest = metal_nodes[np.argmin(np.abs(metal_nodes - oh12))]
    sel = sel[np.isclose(sel["oh12"], nearest)]
    value = interp_in_log_u(sel["log_u"], sel["HA"], log_u)
    if np.isfinite(value):
        return value, HALPHA_GRID
    return CASE_B_HA_HB, "case_b"


def _model_meta(m: Mapping) -> dict:
    return {
        "name": m["name"],
        "r_kpc": float(m["r_kpc"]),
        "density_law": m["density_law"],
        "nh_variant": m["nh_variant"],
        "n_h": float(m["n_h"]),
        "log_oh": float(m["log_oh"]),
        "log_nh": float(m["log_nh"]),
        "log_u": float(m["log_u"]),
    }


def _tie_weak_lines(row: dict) -> dict:
    """[O III]4959 = 5007/3 and [N II]6548 = 6583/3 (the grids lack them)."""
    row["OIII4959"] = row["OIII5007"] / 3.0
    row["NII6548"] = row["NII6583"] / 3.0
    return row


def grid_from_packaged(models: Sequence[Mapping], grid: str = "hcm_bpass") -> pd.DataFrame:
    """Line intensities of the models from a packaged grid of Cloudy 17 runs.

    Parameters
    ----------
    models : sequence of mapping
        Entries of :func:`model_grid_spec`.
    grid : {'hcm_bpass', 'hcm_popstar', 'calabro2023'}
        ``hcm_*``: HII-CHI-Mistry v6.0 libraries (the primary grid is
        ``hcm_bpass``), used at the nodes 12+log(O/H) = 12 + log_oh and
        log(N/O) = log_nh - log_oh (8.4 and -1.0 / -1.5 by default; other
        values raise ValueError).  ``calabro2023``: Calabro et al. (2023),
        log n_H = 2 and the metallicity node nearest 12 + log_oh; its N/O
        follows its own abundance set, so the [N II] lines are NaN.

    Returns
    -------
    pandas.DataFrame
        One row per model: :data:`MODEL_COLUMNS` and :data:`MODEL_LINES`
        relative to Hbeta (HB = 1).  Lines are interpolated linearly in log U
        between grid nodes at fixed abundances.  Outside the grid's log U
        range the lines are NaN and ``missing`` is True (no extrapolation).
        ``OIII4959`` = ``OIII5007``/3 and ``NII6548`` = ``NII6583``/3
        (not in the grids).  ``HA``: Halpha/Hbeta from the Calabro grid
        (log n_H = 2, metallicity nearest 12+log(O/H) = 8.4, i.e. Z = 0.0076
        = 0.54 Zsun) where log U lies in its range -3 .. -1.5, else Case B
        2.86; ``halpha_source`` says which ('calabro2023' / 'case_b').
        ``CII`` is NaN: [C II] 158 um is not in these grids (and the paper
        does not model it with Cloudy).
    """
    table = read_packaged_grid(grid)
    calabro = table if grid == HALPHA_GRID else read_packaged_grid(HALPHA_GRID)
    rows = []
    for m in models:
        oh12 = 12.0 + float(m["log_oh"])
        if grid == "calabro2023":
            sel = table[np.isclose(table["log_density"], CALABRO_LOG_DENSITY)]
            nodes = np.unique(sel["oh12"])
            sel = sel[np.isclose(sel["oh12"], nodes[np.argmin(np.abs(nodes - oh12))])]
            lines = ("OII3728", "OIII5007")
        else:
            sel = _node_rows(table, "oh12", oh12, "12+log(O/H)")
            sel = _node_rows(sel, "log_no", float(m["log_nh"]) - float(m["log_oh"]), "log(N/O)")
            lines = ("OII3728", "OIII5007", "NII6583")
        row = _model_meta(m)
        row.update({line: interp_in_log_u(sel["log_u"], sel[line], m["log_u"]) for line in lines})
        row.setdefault("NII6583", np.nan)
        row["HB"] = 1.0
        row = _tie_weak_lines(row)
        missing = not np.isfinite(row["OIII5007"])
        row["HA"], row["halpha_source"] = (np.nan, "none") if missing else _halpha_over_hbeta(calabro, oh12, m["log_u"])
        if missing:
            row["HB"] = np.nan
        row["CII"] = np.nan
        row["grid_source"] = grid
        row["missing"] = missing
        rows.append(row)
    return _model_table(rows)


def _model_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    return df[list(MODEL_COLUMNS) + list(MODEL_LINES)]


def grid_from_cloudy_runs(models: Sequence[Mapping], line_list_paths, main_outputs=None) -> pd.DataFrame:
    """The model table of :func:`grid_from_packaged` from real Cloudy runs.

    Parameters
    ----------
    models : sequence of mapping
        Entries of :func:`model_grid_spec`.
    line_list_paths : mapping or sequence
        ``name -> .lines file`` (or one path per model, in order).
    main_outputs : mapping or sequence, optional
        ``name -> main output``; each must contain "Cloudy exited OK".

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`grid_from_packaged`, ``grid_source`` =
        'cloudy', ``halpha_source`` = 'cloudy'; lines relative to Hbeta.
        A model whose Hbeta or [O III]5007 is absent is ``missing``.
    """
    paths = _by_name(models, line_list_paths)
    outs = _by_name(models, main_outputs) if main_outputs is not None else {}
    rows = []
    for m in models:
        raw = parse_line_list(paths[m["name"]], outs.get(m["name"]))
        inten = project_line_intensities(raw)
        hb = inten["HB"]
        row = _model_meta(m)
        ok = np.isfinite(hb) and hb > 0
        row.update({line: (inten[line] / hb if ok else np.nan) for line in MODEL_LINES})
        row["grid_source"] = "cloudy"
        row["halpha_source"] = "cloudy"
        row["missing"] = not (ok and np.isfinite(row["OIII5007"]))
        rows.append(row)
    return _model_table(rows)


def _by_name(models, values) -> dict:
    if isinstance(values, Mapping):
        return dict(values)
    values = list(values)
    if len(values) != len(models):
        raise ValueError(f"got {len(values)} paths for {len(models)} models; give one per model or a name -> path mapping")
    return {m["name"]: v for m, v in zip(models, values)}


# ---------------------------------------------------------------------------
# Delta log(ratio)
# ---------------------------------------------------------------------------


def model_ratios(grid_df: pd.DataFrame, ratios=DELTA_RATIOS) -> pd.DataFrame:
    """log10 of each ratio (SPEC section 7) per model row, long format.

    Returns
    -------
    pandas.DataFrame
        ``name, r_kpc, density_law, nh_variant, log_nh, log_u, grid_source,
        missing, ratio, log_ratio``.  ``log_ratio`` is NaN where a line is
        missing or a ratio is not positive.
    """
    meta = ["name", "r_kpc", "density_law", "nh_variant", "log_nh", "log_u", "grid_source", "missing"]
    parts = []
    for ratio in ratios:
        d = RATIO_DEFINITIONS[ratio]
        num = grid_df[list(d.numerator)].sum(axis=1, min_count=len(d.numerator))
        den = grid_df[list(d.denominator)].sum(axis=1, min_count=len(d.denominator))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (num / den).to_numpy(dtype=float)
            log_value = np.where(value > 0, np.log10(np.where(value > 0, value, 1.0)), np.nan)
        part = grid_df[meta].copy()
        part["ratio"] = ratio
        part["log_ratio"] = log_value
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def delta_ratios(grid_df: pd.DataFrame, ratios=DELTA_RATIOS) -> pd.DataFrame:
    """Delta log(ratio) relative to r = 1 kpc (Figs. 5 and 7).

    Parameters
    ----------
    grid_df : pandas.DataFrame
        Output of :func:`grid_from_packaged` or :func:`grid_from_cloudy_runs`.
    ratios : sequence of str
        Ratio names (default O3, O2, O32, R23, N2, N2O2).

    Returns
    -------
    pandas.DataFrame
        :func:`model_ratios` plus ``delta_log_ratio`` = log ratio(r) - log
        ratio(1 kpc) of the same density law and N/H variant (NaN where
        either is missing), sorted by ratio, law, variant and r.
    """
    long = model_ratios(grid_df, ratios)
    keys = ["ratio", "density_law", "nh_variant"]
    ref = long[np.isclose(long["r_kpc"], R_REF_KPC)][keys + ["log_ratio"]]
    ref = ref.rename(columns={"log_ratio": "_ref"}).drop_duplicates(keys)
    out = long.merge(ref, on=keys, how="left")
    out["delta_log_ratio"] = out["log_ratio"] - out["_ref"]
    out = out.drop(columns="_ref")
    order = {r: i for i, r in enumerate(ratios)}
    out = out.assign(_o=out["ratio"].map(order)).sort_values(["_o", "density_law", "nh_variant", "r_kpc"], kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)
