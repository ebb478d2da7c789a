"""[C II] 158 um fluxes of the ISM and CGM regions from ALMA cubes (SPEC section 11, paper Sect. 5.3).

One module per concern:

- :mod:`.cube` -- ALMA cube I/O (:func:`read_alma_cube`), velocity axis, units;
- :mod:`.weights` -- IFU masks -> fractional ALMA-pixel weights (:func:`reproject_masks`);
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
    read_alma_cube,
    check_line_coverage,
    jykms_to_cgs,
    cgs_to_jykms,
)
from .weights import (  # noqa: F401
    RegionWeights,
    reproject_masks,
    region_names,
)
from .noise import (  # noqa: F401
    realisation_rng,
    signal_free_mask,
    estimate_channel_rms,
    beam_theta,
    beam_kernel,
    noise_autocorrelation,
    kernel_correlation_area,
    analytic_errors,
    noise_spectra,
)
from .measure import (  # noqa: F401
    CII_COLUMNS,
    CiiSpectrum,
    extract_cii,
    CiiFit,
    fit_cii,
    MCResult,
    window_flux,
    fit_realisations,
    mc_cii,
    measure_galaxy,
)
from .extent import (  # noqa: F401
    NoCiiExtent,
    moment0,
    moment0_noise,
    cii_contour_region,
    cii_half_light_radius,
)
from .spill import (  # noqa: F401
    matching_kernel,
    transfer_matrix,
    transfer_matrix_from_cube,
    spill_corrected,
    REALISATION_COLUMNS,
    realisation_table,
    native_resolution,
)
from .table import (  # noqa: F401
    RATIO_TABLE_COLUMNS,
    cii_line_flux_rows,
    spectra_table,
    cii_ratio_table,
    with_ratio_percentiles,
)
from .sims import (  # noqa: F401
    SIM_LABEL,
    sim_profiles,
    write_sim_maps,
    read_sim_maps,
    sim_tables,
)
