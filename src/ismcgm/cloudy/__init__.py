"""Photoionisation comparison: Cloudy decks, Cloudy output and packaged grids.

SPEC section 9, paper Sect. 5.2.1 and Appendix A.  A slab (a thin sheet of
gas) has its illuminated face at a distance ``r`` = 1, 5, 10, 15 kpc from a
central source; its hydrogen density is

    n_H(r) = n_H(1 kpc) (r / 1 kpc)^alpha,   n_H(1 kpc) = 100 cm^-3,

with alpha = 0 (``const``), -1.5 (``r-1.5``) or -2 (``r-2``), constant
inside each slab.  log(O/H) = -3.6; log(N/H) = -4.6 everywhere
(``nh_variant='fiducial'``) or -5.1 for r > 1 kpc (``'low_outer'``; the
1 kpc slab keeps -4.6).  Each run stops at N(H0) = 1e22 cm^-2.

One module per concern:

- :mod:`.config` -- the ``cloudy:`` config section, density laws, log U and the model list;
- :mod:`.run` -- decks, the line-list file, running Cloudy, reading its line list;
- :mod:`.grid` -- the model table from packaged grids or real runs (``grid.csv``);
- :mod:`.compare` -- Delta log(ratio) profiles and the observed boxes of Figs. 5 and 7.
"""

from __future__ import annotations

from .compare import (  # noqa: F401
    BOX_COLUMNS,
    delta_ratios,
    model_ratios,
    observed_boxes,
    observed_boxes_from_stats,
    r_cgm_range,
)
from .config import (  # noqa: F401
    C_CM_S,
    CASE_B_HA_HB,
    CLOUDY_RUN_KEYS,
    DEFAULT_CLOUDY_CONFIG,
    DELTA_RATIOS,
    KPC_CM,
    MODEL_COLUMNS,
    MODEL_LINES,
    NH_VARIANTS,
    R_REF_KPC,
    cloudy_model_config,
    cloudy_models,
    cloudy_runs,
    density,
    density_laws,
    log_qh_from_u,
    log_u_at,
    merged_config,
    model_grid_spec,
    model_name,
    unique_models,
)
from .grid import (  # noqa: F401
    CALABRO_LOG_DENSITY,
    GRID_COLUMNS,
    HALPHA_GRID,
    PACKAGED_GRIDS,
    grid_from_cloudy_runs,
    grid_from_packaged,
    grid_table,
    interp_in_log_u,
    model_grid,
    packaged_grid_path,
    read_packaged_grid,
)
from .run import (  # noqa: F401
    CLOUDY_LINE_LABELS,
    LABEL_WAVELENGTH_RTOL,
    check_finished,
    deck_text,
    label_key,
    parse_line_list,
    project_line_intensities,
    run_cloudy,
    write_all_decks,
    write_deck,
    write_line_list_file,
)
