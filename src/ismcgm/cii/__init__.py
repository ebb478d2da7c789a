"""[C II] 158 um fluxes of the ISM and CGM regions from ALMA cubes (SPEC section 11, paper Sect. 5.3).

One module per concern:

- :mod:`.cube` -- ALMA cube I/O (:func:`read_alma_cube`), velocity axis, units;
- :mod:`.weights` -- IFU masks -> fractional ALMA-pixel weights (:func:`reproject_masks`);
- :mod:`.fastfit` -- the one-Gaussian fit as lmfit computes it, without lmfit (speed);
- :mod:`.measure` -- extraction, the Gaussian fit, Monte Carlo errors and the
  per-galaxy driver (:func:`measure_galaxy`);
- :mod:`.noise` -- beam-correlated noise (rms, kernel, autocorrelation, noise spectra);
- :mod:`.extent` -- the [C II] extent used by the mask variants (imported by
  :mod:`ismcgm.masks`; nothing here imports the masks module);
- :mod:`.spill` -- the beam-spill transfer matrix and [C II] at the IFU resolution;
- :mod:`.table` -- the [C II] line-flux rows and the [C II]/Ha table of Fig. 6;
- :mod:`.sims` -- radial profiles of simulation maps (the SYNTHETIC maps
  themselves are made by :mod:`ismcgm.mock.sims`).

The names below are re-exported so that ``from ismcgm import cii;
cii.measure_galaxy(...)`` keeps working.
"""

from __future__ import annotations

from .cube import (  # noqa: F401
    AlmaCube,
    cgs_to_jykms,
    check_line_coverage,
    jykms_to_cgs,
    read_alma_cube,
)
from .extent import (  # noqa: F401
    NoCiiExtent,
    cii_contour_region,
    cii_half_light_radius,
    moment0,
    moment0_noise,
)
from .measure import (  # noqa: F401
    CII_COLUMNS,
    CiiFit,
    CiiSpectrum,
    MCResult,
    extract_cii,
    fit_cii,
    fit_realisations,
    mc_cii,
    measure_galaxy,
    window_flux,
)
from .noise import (  # noqa: F401
    analytic_errors,
    beam_kernel,
    beam_theta,
    estimate_channel_rms,
    kernel_correlation_area,
    joint_noise_spectra,
    noise_autocorrelation,
    noise_spectra,
    realisation_rng,
    signal_free_mask,
)
from .sims import (  # noqa: F401
    SIM_LABEL,
    read_sim_maps,
    sim_profiles,
    sim_tables,
    write_sim_maps,
)
from .spill import (  # noqa: F401
    REALISATION_COLUMNS,
    matching_kernel,
    native_resolution,
    realisation_table,
    spill_corrected,
    transfer_matrices,
    transfer_matrix,
    transfer_matrix_from_cube,
    transfer_matrix_realisations,
)
from .table import (  # noqa: F401
    RATIO_TABLE_COLUMNS,
    cii_line_flux_rows,
    cii_ratio_table,
    spectra_table,
    with_ratio_percentiles,
)
from .weights import (  # noqa: F401
    RegionWeights,
    region_names,
    reproject_masks,
)
