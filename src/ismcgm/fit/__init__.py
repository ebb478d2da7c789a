"""Emission-line fitting of the extracted spectra (SPEC section 4; the method is described in :mod:`.spectra`).

- :mod:`.spectra` -- :func:`fit_spectra` and :class:`FitResult` (the entry point);
- :mod:`.model` -- the line model, fit windows and linear amplitudes, :func:`three_channel_flux`;
- :mod:`.fast` -- the fast (profiled, Newton) fitter;
- :mod:`.scan` -- starting points;
- :mod:`.lmfit_ref` -- the lmfit reference fitter.
"""

from __future__ import annotations

from . import fast, model  # noqa: F401
from .model import (  # noqa: F401
    DEFAULT_SIGMA_BOUNDS,
    DEFAULT_SIGMA_SCAN_KMS,
    DEFAULT_V_BOUNDS,
    DEFAULT_V_SCAN_KMS,
    DEFAULT_WINDOW_KMS,
    channel_edges_um,
    line_model,
    three_channel_flux,
)
from .spectra import FitResult, fit_spectra  # noqa: F401

__all__ = [
    "FitResult",
    "fit_spectra",
    "line_model",
    "channel_edges_um",
    "three_channel_flux",
    "DEFAULT_WINDOW_KMS",
    "DEFAULT_V_BOUNDS",
    "DEFAULT_SIGMA_BOUNDS",
    "DEFAULT_V_SCAN_KMS",
    "DEFAULT_SIGMA_SCAN_KMS",
]
