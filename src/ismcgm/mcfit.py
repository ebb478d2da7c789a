"""One Monte Carlo chunk: draw and fit the realisations of a galaxy's region spectra (SPEC 4-5).

The workflow splits the ``mc.n_realisations`` realisations of every
(component, region, grating) spectrum into chunks of ``mc.chunk_size``
(:func:`chunk_realisations`); :func:`chunk_columns` draws and fits one chunk
of one galaxy and grating, and :func:`write_chunk` writes a job's columns as
parquet.  The columns are plain numpy arrays and this module does not import
pandas (the gather reads the chunks with pandas: :func:`ismcgm.io.read_chunks`,
:func:`ismcgm.linefluxes.gather`).  Measured (stop 36): pyarrow imports pandas
itself on its first array conversion, so an ``mc_fit`` job still loads pandas
(~0.25 s) when it writes its chunk; dropping it from the job needs a chunk
format written without pyarrow (e.g. a FITS table through astropy.io.fits).
"""

from __future__ import annotations

import math

import numpy as np

from . import instrument as ins
from . import mc
from .errors import InputError
from .fit import fit_spectra, three_channel_flux
from .io import atomic_path

#: The columns of a chunk, in order.
CHUNK_COLUMNS = ("id", "component", "region", "grating", "realisation", "line", "flux", "flux3",
                 "velocity_kms", "sigma_kms")


def n_chunks(n_realisations: int, chunk_size: int) -> int:
    """Number of Monte Carlo chunks."""
    return math.ceil(n_realisations / chunk_size)


def chunk_realisations(chunk: int, n_realisations: int, chunk_size: int) -> list[int]:
    """Realisation indices of chunk ``chunk``."""
    return list(range(chunk * chunk_size, min((chunk + 1) * chunk_size, n_realisations)))


def chunk_columns(gid, spectra, z, grating, realisations, seed, fit_cfg, cube_draws=None) -> dict[str, np.ndarray]:
    """Draw and fit one chunk of realisations of every region of a galaxy.

    Parameters
    ----------
    gid : str
        Galaxy id.
    spectra : list of (component, region, wave_um, flux, err)
        The nominal extracted spectra.
    z : float
    grating : str
    realisations : list of int
    seed : int
        Global seed.
    fit_cfg : dict
        ``method``, ``continuum_order``, ``n_components``.
    cube_draws : dict, optional
        ``{(component, region): (n_real, n_wave) array}`` of cube-level
        realisations (``mc.level: cube``); default: spectrum-level draws.

    Returns
    -------
    dict of str to ndarray
        The columns :data:`CHUNK_COLUMNS`, one row per region, line and
        realisation (blocks of one region and line, in the order of
        ``spectra`` and of the fitted lines).
    """
    if not ins.lines_in_grating(grating, z):
        raise InputError(gid, f"{grating} spectra", f"no emission line falls inside the {grating} coverage at z={z:g}",
                         "check the redshift in the sample table (or leave this grating out)")
    realisations = np.asarray(realisations, dtype=int)
    n = realisations.size
    # one block of n rows per (region, line), in that order; the columns are joined once at the end
    keys, cols = [], {c: [] for c in ("flux", "flux3", "velocity_kms", "sigma_kms")}
    for component, region, wave, flux, err in spectra:
        if cube_draws is not None:
            draws = cube_draws[(component, region)]
        else:
            draws = mc.spectrum_realisations(flux, err, seed, component, region, grating, realisations)
        try:
            res = fit_spectra(wave, draws, err, z, grating, method=fit_cfg["method"],
                              cont_order=fit_cfg["continuum_order"], n_components=fit_cfg["n_components"])
        except ValueError as exc:
            raise InputError(gid, f"{component} {region} {grating} spectrum", str(exc),
                             "check the cube (NaN/ERR) and the mask of this region") from None
        for line in res.lines:
            keys.append((component, region, line))
            cols["flux"].append(np.broadcast_to(res.flux[line], n))
            cols["flux3"].append(np.broadcast_to(three_channel_flux(wave, draws, z, line, grating), n))
            cols["velocity_kms"].append(np.broadcast_to(res.velocity_kms, n))
            cols["sigma_kms"].append(np.broadcast_to(res.sigma_kms, n))
    component, region, line = (np.repeat([k[i] for k in keys], n) for i in range(3))
    return {
        "id": np.repeat(gid, n * len(keys)), "component": component, "region": region,
        "grating": np.repeat(grating, n * len(keys)), "realisation": np.tile(realisations, len(keys)),
        "line": line, **{c: np.concatenate(v).astype(float) for c, v in cols.items()},
    }


def write_chunk(parts, path) -> None:
    """Write the columns of :func:`chunk_columns` (one dict per grating, in order) as one parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: np.concatenate([p[c] for p in parts]) for c in CHUNK_COLUMNS})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
