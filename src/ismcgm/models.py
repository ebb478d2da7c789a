"""Glue of the model-comparison and abundance rules (SPEC sections 9-10).

The thin scripts of ``workflow/rules/models.smk`` call these functions, so
that their logic is testable without Snakemake:

* :func:`cloudy_models` / :func:`cloudy_runs` turn the ``cloudy:`` config
  section into the model list of :func:`ismcgm.cloudy.model_grid_spec`
  (and the distinct runs, one deck each).
* :func:`run_cloudy` runs a Cloudy executable on one deck in a scratch
  folder and moves its main output and line list into place.
* :func:`model_grid` builds the model table (real runs or a packaged grid)
  and :func:`grid_table` orders its columns for ``grid.csv``.
* :func:`observed_boxes` gives the observed Delta boxes of Figs. 5 and 7.
* :func:`abundance_input_from_realisations` builds the per-realisation
  N2O2 and R23 of :func:`ismcgm.abundances.abundance_table`.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import cloudy, mc
from .ratios import GRATING_PREFERENCE, RATIO_DEFINITIONS

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Cloudy
# ---------------------------------------------------------------------------

#: Keys of the ``cloudy:`` config section that are not model parameters.
CLOUDY_RUN_KEYS = ("executable", "grid")

#: Columns of ``grid.csv``: the model, then the lines relative to Hbeta,
#: then provenance (``halpha_source``) and ``missing`` (log U outside the grid).
GRID_COLUMNS = (
    ("r_kpc", "density_law", "nh_variant", "log_nh", "log_u", "grid_source")
    + tuple(cloudy.MODEL_LINES)
    + ("name", "n_h", "log_oh", "halpha_source", "missing")
)


def density_laws(laws) -> dict[str, float]:
    """``name -> alpha`` from the config form (a list of ``{name, alpha}``) or a mapping."""
    if isinstance(laws, Mapping):
        return {str(k): float(v) for k, v in laws.items()}
    out = {}
    for law in laws:
        name = str(law["name"])
        if name in out:
            raise ValueError(f"density law {name!r} is listed twice in cloudy.density_laws")
        out[name] = float(law["alpha"])
    return out


def cloudy_model_config(section: Mapping | None) -> dict:
    """The model parameters of the ``cloudy:`` config section (without executable, grid).

    ``density_laws`` becomes the ``name -> alpha`` mapping of
    :data:`ismcgm.cloudy.DEFAULT_CLOUDY_CONFIG`.
    """
    out = {k: v for k, v in dict(section or {}).items() if k not in CLOUDY_RUN_KEYS}
    if "density_laws" in out:
        out["density_laws"] = density_laws(out["density_laws"])
    return out


def cloudy_models(section: Mapping | None) -> list[dict]:
    """All models (both N/H variants) of :func:`ismcgm.cloudy.model_grid_spec`."""
    return cloudy.model_grid_spec(cloudy_model_config(section))


def cloudy_runs(section: Mapping | None) -> dict[str, dict]:
    """``name -> model`` of the distinct Cloudy runs (one deck each)."""
    return {m["name"]: m for m in cloudy.unique_models(cloudy_models(section))}


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
        raise ValueError(
            f"cannot run Cloudy executable {cmd[0]!r} ({exc}); fix: set cloudy.executable to the path "
            "of Cloudy's cloudy.exe, or to null to use a packaged grid"
        ) from None
    for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        if text.strip():
            log.info("Cloudy %s:\n%s", stream, text.strip()[-4000:])
    main_out = work / f"{name}.out"
    try:
        if proc.returncode != 0:
            raise ValueError(f"Cloudy exited with status {proc.returncode} for model {name}; see the job's log")
        cloudy.check_finished(main_out)
        saved = work / f"{name}.lines"
        if not saved.is_file():
            raise ValueError(f"Cloudy wrote no line list for model {name}; check the deck's save command")
    except ValueError:
        if main_out.is_file():
            log.info("end of Cloudy's %s.out:\n%s", name, main_out.read_text(errors="replace")[-4000:])
        raise
    for src, dst in ((saved, lines), (main_out, out)):
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def model_grid(models: Sequence[Mapping], grid: str = "hcm_bpass", line_lists=None, main_outputs=None) -> pd.DataFrame:
    """Model table from real Cloudy runs (``line_lists`` given) or from a packaged grid."""
    if line_lists is not None:
        return cloudy.grid_from_cloudy_runs(models, line_lists, main_outputs)
    return cloudy.grid_from_packaged(models, grid)


def grid_table(grid_df: pd.DataFrame) -> pd.DataFrame:
    """The model table with the columns of :data:`GRID_COLUMNS`, in that order."""
    return grid_df[list(GRID_COLUMNS)].reset_index(drop=True)


# ---------------------------------------------------------------------------
# observed boxes of Figs. 5 and 7
# ---------------------------------------------------------------------------


def r_cgm_range(regions: pd.DataFrame) -> tuple[float, float]:
    """(min, max) circularised CGM radius [kpc] of the sample's components."""
    rows = regions[regions["region"] == "CGM"] if "region" in regions.columns else regions
    r = pd.to_numeric(rows["r_cgm_kpc"], errors="coerce").to_numpy(float)
    r = r[np.isfinite(r) & (r > 0)]
    if r.size == 0:
        raise ValueError("regions table has no finite r_cgm_kpc; fix: rebuild results/tables/<variant>/regions.csv")
    return float(r.min()), float(r.max())


def observed_boxes(stats_df: pd.DataFrame, regions: pd.DataFrame) -> pd.DataFrame:
    """Observed 16-84 percentile Delta boxes spanning the sample's r_CGM range."""
    from .plots.fig5_cloudy import observed_boxes_from_stats  # matplotlib only when needed

    r_min, r_max = r_cgm_range(regions)
    return observed_boxes_from_stats(stats_df, r_min, r_max)


# ---------------------------------------------------------------------------
# abundance input
# ---------------------------------------------------------------------------

_KEYS = ["id", "component", "region"]

#: Lines that must be detected for each ratio (tied lines follow their reference).
ABUNDANCE_RATIO_LINES = {
    "N2O2": ("NII6583", "OII3728"),
    "R23": ("OIII5007", "OII3728", "HB"),
}


def preferred_realisations(real: pd.DataFrame) -> pd.DataFrame:
    """One row per component, region, line and realisation: G395M/G395H over G235M."""
    rank = real["grating"].map({g: i for i, g in enumerate(GRATING_PREFERENCE)}).fillna(len(GRATING_PREFERENCE))
    order = real.assign(_rank=rank).sort_values("_rank", kind="stable")
    keep = order.drop_duplicates(_KEYS + ["line", "realisation"], keep="first")
    return keep.drop(columns="_rank").sort_index()


def detections(real: pd.DataFrame, detect_snr: float) -> pd.Series:
    """Detected (median/std of the observed MC fluxes >= ``detect_snr``) per id, component, region, line."""
    pref = preferred_realisations(real)
    return pref.groupby(_KEYS + ["line"], sort=True)["flux"].apply(
        lambda f: bool(mc.summarise(f.to_numpy(float), detect_snr).detected)
    )


def abundance_input_from_realisations(real: pd.DataFrame, detect_snr: float | None = 3.0) -> pd.DataFrame:
    """Per-realisation dust-corrected N2O2 and R23 (input of :func:`ismcgm.abundances.abundance_table`).

    Parameters
    ----------
    real : pandas.DataFrame
        ``realisations.parquet`` of the line-fitting stage: ``id, component,
        region, grating, line, realisation, flux, flux_dustcorr`` (one row per
        realisation).  A line measured in two gratings is taken from G395M
        (or G395H), not G235M (:data:`ismcgm.ratios.GRATING_PREFERENCE`).
    detect_snr : float or None
        A ratio is NaN for every realisation of a component and region where
        one of its lines (:data:`ABUNDANCE_RATIO_LINES`) is not detected
        (median/std of the observed fluxes < ``detect_snr``, as in the line
        table): no N/O from limits.  None keeps all realisations.

    Returns
    -------
    pandas.DataFrame
        ``id, component, region, mc, N2O2, R23`` (linear), ``mc`` = realisation
        index.  N2O2 = [N II]6583/[O II]3728 and R23 = ([O III]4959 +
        [O III]5007 + [O II]3728)/Hbeta from the dust-corrected fluxes of the
        same realisation; NaN where a line is missing.
    """
    need = set(_KEYS + ["grating", "line", "realisation", "flux", "flux_dustcorr"])
    missing = sorted(need - set(real.columns))
    if missing:
        raise ValueError(f"realisations table lacks columns {missing}; fix: rerun the mc_gather rule")
    pref = preferred_realisations(real)
    wide = pref.set_index(_KEYS + ["realisation", "line"])["flux_dustcorr"].unstack("line").sort_index()
    out = wide.index.to_frame(index=False).rename(columns={"realisation": "mc"})
    det = detections(real, detect_snr) if detect_snr is not None else None
    for ratio in ("N2O2", "R23"):
        d = RATIO_DEFINITIONS[ratio]
        cols = list(d.numerator) + list(d.denominator)
        if not set(cols) <= set(wide.columns):
            out[ratio] = np.nan
            continue
        num = wide[list(d.numerator)].sum(axis=1, min_count=len(d.numerator)).to_numpy(float)
        den = wide[list(d.denominator)].sum(axis=1, min_count=len(d.denominator)).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(den != 0, num / den, np.nan)
        if det is not None:
            ok = np.ones(len(out), dtype=bool)
            for line in ABUNDANCE_RATIO_LINES[ratio]:
                idx = pd.MultiIndex.from_frame(out[_KEYS].assign(line=line))
                ok &= det.reindex(idx).fillna(False).to_numpy(bool)
            value = np.where(ok, value, np.nan)
        out[ratio] = value
    return out[_KEYS + ["mc", "N2O2", "R23"]]


def abundance_delta_table(inp: pd.DataFrame) -> pd.DataFrame:
    """Delta log(N/O) CGM - ISM per component and for the sample (:func:`ismcgm.abundances.delta_table`)."""
    from .abundances import delta_table

    return delta_table(inp)

