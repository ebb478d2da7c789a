"""Model tables: the packaged photoionisation grids (HII-CHI-Mistry, Calabro et al. 2023) or real Cloudy runs, and ``grid.csv``.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np
import pandas as pd

from ..errors import InputError
from .config import CASE_B_HA_HB, MODEL_COLUMNS, MODEL_LINES
from .run import parse_line_list, project_line_intensities

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


def packaged_grid_path(grid: str):
    """Traversable of a packaged grid file (:data:`PACKAGED_GRIDS`)."""
    if grid not in PACKAGED_GRIDS:
        raise InputError(None, "config", f"unknown Cloudy grid {grid!r}", f"set cloudy.grid to one of {', '.join(PACKAGED_GRIDS)}")
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
        raise InputError(None, "config", f"{what} = {value:g} is not a node of the packaged grid ({nodes}); "
                         "the grids are used only at their nodes", "change the Cloudy abundances in the config")
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


#: Columns of ``grid.csv``: the model, then the lines relative to Hbeta,
#: then provenance (``halpha_source``) and ``missing`` (log U outside the grid).
GRID_COLUMNS = (
    ("r_kpc", "density_law", "nh_variant", "log_nh", "log_u", "grid_source")
    + tuple(MODEL_LINES)
    + ("name", "n_h", "log_oh", "halpha_source", "missing")
)


def model_grid(models: Sequence[Mapping], grid: str = "hcm_bpass", line_lists=None, main_outputs=None) -> pd.DataFrame:
    """Model table from real Cloudy runs (``line_lists`` given) or from a packaged grid."""
    if line_lists is not None:
        return grid_from_cloudy_runs(models, line_lists, main_outputs)
    return grid_from_packaged(models, grid)


def grid_table(grid_df: pd.DataFrame) -> pd.DataFrame:
    """The model table with the columns of :data:`GRID_COLUMNS`, in that order."""
    return grid_df[list(GRID_COLUMNS)].reset_index(drop=True)
