"""The synthetic ("mock") survey: JWST NIRSpec IFU cubes, NIRCam/HST images and
ALMA [C II] cubes with known truth (SPEC section 14).

**Everything produced here is synthetic** and labelled so in every file
(``MOCK = T`` and a ``COMMENT`` in the primary header, ``label`` in
``truth.json``).  Mock IDs are ``mock01``, ``mock02``, ... and never look like
a real survey's.

Design
------
:func:`plan_survey` turns the ``mock:`` config section into one plain-dict
*plan* per galaxy (positions, morphology, kinematics, dust, fluxes, grids).
It is cheap and deterministic (seeded from ``mock.seed``) so the Snakefile
calls it at parse time to know the galaxy list and each galaxy's gratings
without generating any data.  The writers (:func:`write_ifu`,
:func:`write_image`, :func:`write_alma`) render one product each from a
plan; every product draws its noise from its own random stream keyed by
(``mock.seed``, galaxy, product), so changing, say, the injected O3 shift
only changes the IFU cubes and leaves the images and ALMA cubes (and their
noise) untouched.

Sky model
---------
Each galaxy component (two for mergers) has an ISM and a fainter, extended
CGM halo with its own line ratios: ``log(ratio)_CGM = log(ratio)_ISM + shift`` for the ratios of
the ``mock.cgm_minus_ism_dex`` section (intrinsic, dust-free), where each
galaxy's shift is the configured value plus ``scatter_dex`` times a standard
normal.  Their sizes and profiles are a preset (``mock.geometry``,
:mod:`.geometry`): ``paper`` (default) -- a Sérsic n = 1 ISM of R_e 1.25-1.75
kpc (ISM extent ~3 kpc = 2 R_e) and an exponential halo of scale length
1.8-2.8 kpc, after Wang et al. Sect. 3.1 -- or ``compact``, the original
survey: 1-3 compact Gaussian clumps (sigma 0.03-0.07", 1-2 kpc overall) and a
circular Gaussian halo (sigma 0.22-0.32").  Dust (Calzetti 2000) is injected the same way: E(B-V)_gas of the
ISM is drawn uniformly from ``mock.ebv_gas.ISM`` and the CGM's follows from
the ``BALMER`` shift of the *observed* log(Ha/Hb), ``E_CGM = max(0, E_ISM +
shift / BALMER_DEX_PER_EBV)`` (so a zero-shift mock has equal dust in both
regions; the realised shift after the clipping at 0 is in the truth).  The
stellar continuum follows the ISM.  Because every profile is a circular
Gaussian or a mixture of them (the exponentials) and the PSFs are Gaussian, the PSF-convolved, pixel-integrated maps
are computed exactly with error functions, so the truth maps sum to the
injected fluxes (minus the part outside the field of view: negligible for
the compact preset, ~1-2 % of a paper-geometry halo).

The IFU header WCS is deliberately wrong by ``ifu_wcs_error_arcsec`` (IFU
WCS position minus true position, 0.1-0.2"); the image and ALMA WCS are
right.  Truth maps share the IFU pixel grid (and the IFU header WCS) of the
cube they describe.

Modules
-------
:mod:`.plan` (the survey plan, product paths, sample rows), :mod:`.geometry`
(the size presets), :mod:`.maps`
(exact pixel maps, header WCS), :mod:`.ifu` (IFU cubes, truth maps,
images), :mod:`.alma` (ALMA cubes), :mod:`.sims` (simulation-like maps).

The plan is imported with the package (the workflow plans the survey when it
parses its Snakefile); the writers of :mod:`.ifu`, :mod:`.alma`, :mod:`.maps`
and :mod:`.sims` are loaded on first use of one of their names (module
``__getattr__``, PEP 562), so that a Snakemake parse does not pay for them.
"""

from __future__ import annotations

import importlib

from .plan import (  # noqa: F401
    ALMA_DV_KMS,
    ALMA_NCHAN,
    ALMA_NPIX,
    ALMA_PIXSCALE,
    BALMER_DEX_PER_EBV,
    FILTER_PIVOT_UM,
    HA_HB_INTRINSIC,
    IFU_PIXSCALE,
    IMAGE_PIXSCALE,
    IMAGE_PSF_FWHM,
    MOCK_LABEL,
    galaxy_ids,
    plan_survey,
    product_paths,
    product_plan,
    realise_plan,
    sample_rows,
    write_truth_json,
)

#: Names of the product writers and the submodule that defines each (loaded on first use).
_LAZY = {
    **dict.fromkeys(("_beam_kernel", "alma_cube", "alma_geometry", "beam_area_pix", "cii_truth_map", "write_alma"),
                    ".alma"),
    **dict.fromkeys(("ifu_geometry", "image_noise", "line_profiles", "noiseless_cube", "noiseless_image",
                     "noisy_cube", "truth_maps", "write_cube", "write_image", "write_truth"), ".ifu"),
    "_celestial_header": ".maps",
    "mock_sim_maps": ".sims",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
