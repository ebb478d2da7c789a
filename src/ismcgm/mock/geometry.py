"""SYNTHETIC mock geometry presets: the sizes and radial profiles of each component's ISM and CGM halo.

Two presets (``mock.geometry``):

``compact``
    The survey's original geometry: an ISM of 1-3 Gaussian clumps (sigma
    0.03-0.07") and a Gaussian halo (sigma 0.22-0.32"); circularised ISM radii
    ~1.7 kpc, CGM outer radii ~3.6 kpc, [C II] half-light radius ~0.9 kpc
    (median, 18-galaxy mock, README "Mock geometry").  The plan draws of this
    preset are those of the original survey, so its products are unchanged.
``paper`` (default)
    The sizes of Wang et al. (their Sect. 3.1): an ISM following a Sérsic
    n = 1 (exponential) profile of effective radius R_e (their median
    R_e,F444W = 0.21" ~ 1.4 kpc, an ISM extent of ~3 kpc = 2 R_e, which
    holds 86 % of an n = 1 profile's light), the continuum image's
    ``ism_nsigma`` isophote placed at 2 R_e; a CGM halo with an exponential
    profile that has no break or truncation inside the field (the paper,
    after Ikeda et al. 2025: the [C II] profile shows no break out to
    ~15 kpc); scale lengths drawn so that the [C II] half-light radius
    (ISM + halo, measured as the ``cii4r`` variant measures it) is ~2 kpc.
    The fields grow to hold the halo to r ≳ 14 kpc and the CGM masks of
    r ~ 6-10 kpc (README "Mock geometry" for the measured sizes).

Every exponential is rendered as a mixture of concentric circular Gaussians
(:func:`exponential_mixture`), so the PSF-convolved, pixel-integrated maps
stay exact error-function integrals (:mod:`.maps`).  The sizes of the
``paper`` preset are drawn from their own random stream, keyed by
(``mock.seed``, galaxy, "geometry"), so both presets share every other
draw (redshift, fluxes, ratios, dust, noise).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..constants import proper_kpc_per_arcsec

GEOMETRIES = ("paper", "compact")

#: paper preset: ISM effective radius R_e [kpc] (Wang et al. Sect. 3.1: median R_e,F444W ~ 1.4 kpc,
#: ISM extent ~3 kpc = 2 R_e); the continuum isophote of the ISM mask sits at ISM_EXTENT_RE * R_e.
PAPER_RE_KPC = (1.25, 1.75)
ISM_EXTENT_RE = 2.0

#: paper preset: exponential scale length [kpc] of the CGM halo (no break inside the field, as the
#: [C II] profiles of Ikeda et al. 2025 out to ~15 kpc), chosen so that the [C II] half-light radius
#: of ISM + halo is ~2 kpc (the issue's r_1/2 ~ 2 kpc; measured: README "Mock geometry").
PAPER_HALO_H_KPC = (1.8, 2.8)

#: paper preset: merger separation [arcsec] (two ~3 kpc ISMs side by side), image and ALMA fields.
PAPER_MERGER_SEP_ARCSEC = (0.9, 1.3)
PAPER_IMAGE_FIELD_ARCSEC = 5.6
PAPER_ALMA_NPIX = 96

#: IFU field side [0.1" spaxels] of each preset when ``mock.ifu_npix`` is not set.
IFU_NPIX = {"paper": 45, "compact": 31}

#: compact preset: the image field [arcsec] (ALMA keeps ``plan.ALMA_NPIX``).
COMPACT_IMAGE_FIELD_ARCSEC = 3.6


@lru_cache(maxsize=None)
def exponential_mixture(n: int = 12) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Weights and sigmas (in units of the scale length) of Gaussians summing to a 2-D exponential.

    A unit-flux circular exponential ``exp(-r/h) / (2 pi h^2)`` is fitted, flux-weighted (``2 pi r dr``),
    on ``0 <= r <= 12 h`` by ``n`` concentric circular Gaussians with sigmas log-spaced in
    ``[0.03 h, 6 h]`` and non-negative weights (``scipy.optimize.nnls``); the weights are normalised to
    a total flux of 1.  The profile differs from the exponential by < 1.5 % of its central value (and
    of its local value at 1-6 h), and far less once convolved with a PSF.
    """
    sig = np.geomspace(0.03, 6.0, n)
    r = np.linspace(0.0, 12.0, 1201)
    wr = np.sqrt(np.maximum(r, 1e-3))
    target = np.exp(-r) / (2 * np.pi)
    design = np.exp(-0.5 * (r[:, None] / sig) ** 2) / (2 * np.pi * sig**2)
    from scipy.optimize import nnls  # not at import: the workflow plans the mock when it parses

    w, _ = nnls(design * wr[:, None], target * wr)
    keep = w > 0
    w = w[keep] / w[keep].sum()
    return tuple(float(x) for x in w), tuple(float(x) for x in sig[keep])


def exponential_gaussians(dx: float, dy: float, h_arcsec: float, flux: float = 1.0) -> list[dict]:
    """An exponential profile of scale length ``h_arcsec`` at offset (dx, dy) as Gaussian "clumps"."""
    w, s = exponential_mixture()
    return [{"dx": float(dx), "dy": float(dy), "sigma": float(si * h_arcsec), "weight": float(flux * wi)}
            for wi, si in zip(w, s)]


def paper_sizes(rng: np.random.Generator, z: float, n_components: int) -> list[dict]:
    """The ``paper`` preset's sizes of each component: R_e, ISM extent and halo scale length [kpc, arcsec]."""
    kpc = proper_kpc_per_arcsec(z)
    out = []
    for _ in range(n_components):
        re_kpc = float(rng.uniform(*PAPER_RE_KPC))
        h_kpc = float(rng.uniform(*PAPER_HALO_H_KPC))
        out.append({"re_kpc": re_kpc, "re_arcsec": re_kpc / kpc, "halo_h_kpc": h_kpc, "halo_h_arcsec": h_kpc / kpc,
                    "r_ism_arcsec": ISM_EXTENT_RE * re_kpc / kpc})
    return out


def apply_paper_geometry(components: list[dict], sizes: list[dict]) -> None:
    """Replace each component's clumps and Gaussian halo by the ``paper`` preset's exponentials (in place).

    The ISM is one Sérsic n = 1 profile (scale length R_e / 1.678) at the component position, the halo
    an exponential of scale length ``halo_h_arcsec`` (``halo_gaussians``, read by :mod:`.maps`).
    """
    for comp, sz in zip(components, sizes):
        comp["clumps"] = exponential_gaussians(comp["dx"], comp["dy"], sz["re_arcsec"] / SERSIC1_RE_PER_H)
        comp["halo_gaussians"] = exponential_gaussians(comp["dx"], comp["dy"], sz["halo_h_arcsec"])
        comp["ism_profile"] = {"type": "sersic", "n": 1, "re_kpc": sz["re_kpc"], "re_arcsec": sz["re_arcsec"]}
        comp["halo_profile"] = {"type": "exponential", "h_kpc": sz["halo_h_kpc"], "h_arcsec": sz["halo_h_arcsec"]}
        comp.pop("halo_sigma", None)


#: R_e / h of a 2-D exponential (Sérsic n = 1): the half-light radius in scale lengths.
SERSIC1_RE_PER_H = 1.6783469900166608
