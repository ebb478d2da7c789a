"""Cloudy model configuration: the ``cloudy:`` config section, density laws, ionisation parameter and the model list (SPEC section 9).

Ionisation parameter
--------------------
U(r) = Q(H) / (4 pi r^2 n_H(r) c) (paper eq. A1).  With log U(1 kpc) =
-2.3 (U ~ 5e-3, paper footnote 52) the source emits
``log Q(H) = log U(1 kpc) + log(4 pi (1 kpc)^2 n_H(1 kpc) c)`` and

    log U(r) = log U(1 kpc) - (2 + alpha) log(r / 1 kpc),

i.e. -2.3 - 2 log r (const), -2.3 - 0.5 log r (r^-1.5), -2.3 (r^-2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..dust import INTRINSIC_HA_HB
from ..errors import InputError

#: 1 kpc [cm].
KPC_CM = 3.0856775814913673e21


#: Speed of light [cm/s].
C_CM_S = 2.99792458e10


#: Case-B Halpha/Hbeta (T = 1e4 K, n_e = 100 cm^-3), as in the dust correction.
CASE_B_HA_HB = INTRINSIC_HA_HB


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
        raise InputError(None, "config", "cloudy.radii_kpc must list positive radii in kpc", "fix the config")
    if R_REF_KPC not in [float(r) for r in radii]:
        raise InputError(None, "config", "cloudy.radii_kpc must include 1 kpc, the reference of the Delta log(ratio) profiles",
                         "add it to the config")
    if not cfg["density_laws"]:
        raise InputError(None, "config", "cloudy.density_laws is empty", "give at least one {name: alpha}")


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


#: Keys of the ``cloudy:`` config section that are not model parameters.
CLOUDY_RUN_KEYS = ("executable", "grid")


def density_laws(laws) -> dict[str, float]:
    """``name -> alpha`` from the config form (a list of ``{name, alpha}``) or a mapping."""
    if isinstance(laws, Mapping):
        return {str(k): float(v) for k, v in laws.items()}
    out = {}
    for law in laws:
        name = str(law["name"])
        if name in out:
            raise InputError(None, "config", f"density law {name!r} is listed twice in cloudy.density_laws", "list each law once")
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
    return model_grid_spec(cloudy_model_config(section))


def cloudy_runs(section: Mapping | None) -> dict[str, dict]:
    """``name -> model`` of the distinct Cloudy runs (one deck each)."""
    return {m["name"]: m for m in unique_models(cloudy_models(section))}
