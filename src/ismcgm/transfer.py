"""The geometric transfer matrix: how much of each morphological term's light falls into each mask, and its inverse.

Shared by the [C II] beam-spill correction (:mod:`ismcgm.cii.spill`: terms =
the Ha morphology of each region, smoothed to the ALMA beam) and the
ISM/halo decomposition (:mod:`ismcgm.decompose`: terms = the continuum ISM
and a fitted halo profile at the IFU PSF).  ``T[m, k]`` is the fraction of
term ``k``'s total flux that lands in mask ``m``; measured mask fluxes are
``F = T a`` for term fluxes ``a``, so ``a = T^-1 F`` (square ``T``) or the
least-squares solution (more masks than terms), realisation by realisation.
"""

from __future__ import annotations

import numpy as np

#: Largest condition number of ``T`` that is inverted; above it the terms are degenerate in these masks.
MAX_CONDITION = 1e6


def transfer_matrix(term_maps, masks: dict, totals=None) -> np.ndarray:
    """``T[m, k]`` = sum of ``term_maps[k]`` over ``masks[m]``, divided by ``totals[k]``.

    Parameters
    ----------
    term_maps : sequence of ndarray (ny, nx)
        Each term's light on the grid of the masks, at the resolution the fluxes are measured at
        (NaN counts as 0).  ``None`` for a term without a model gives a NaN column.
    masks : dict
        ``{name: bool array}``; the rows of ``T`` follow its order.
    totals : sequence of float, optional
        Each term's total flux (e.g. before smoothing, or integrated beyond the field); default: the
        sum of the map itself.

    Returns
    -------
    ndarray (n_masks, n_terms)
    """
    t = np.full((len(masks), len(term_maps)), np.nan)
    for k, term in enumerate(term_maps):
        if term is None:
            continue
        total = float(np.nansum(term)) if totals is None else float(totals[k])
        if not total > 0:
            continue
        t[:, k] = [term[m].sum() / total for m in masks.values()]
    return t


def solvable(t: np.ndarray) -> bool:
    """Whether ``T`` is finite, has at least as many masks as terms and is well conditioned."""
    t = np.asarray(t, float)
    return bool(t.shape[0] >= t.shape[1] and np.all(np.isfinite(t)) and np.linalg.cond(t) < MAX_CONDITION)


def solve_operator(t: np.ndarray) -> np.ndarray:
    """The linear operator taking mask fluxes to term fluxes: ``T^-1`` (square) or the pseudo-inverse."""
    t = np.asarray(t, float)
    return np.linalg.inv(t) if t.shape[0] == t.shape[1] else np.linalg.pinv(t)
