"""SYNTHETIC simulation-like [C II] and Ha maps (stand-ins for SERRA maps, which are not redistributable).

Every file and table made from them is labelled SYNTHETIC (:data:`ismcgm.cii.sims.SIM_LABEL`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cii.sims import SIM_LABEL, write_sim_maps
from ..seeding import rng as seeded_rng


def mock_sim_maps(seed: int = 1, n: int = 6, npix: int = 121, pixscale_kpc: float = 0.25, outdir=None) -> list[dict]:
    """SYNTHETIC simulation-like [C II] and Ha maps (stand-ins for SERRA; not real).

    Each map is centred; Ha is an exponential disk (scale length 0.6-1.2
    kpc) with two off-centre clumps and a faint diffuse halo (0.2-1 % of the
    central surface brightness, scale length 2-3 kpc); [C II] is a disk of
    scale length 0.6-1.1 times that of Ha (ratio 0.2-0.6 at the centre) plus
    a faint extended halo (0-1 % of its central surface brightness, scale
    length 2-4 kpc), so some maps have a falling and some a rising
    [C II]/Ha.
    Units: erg/s/cm2 per pixel (Ha total ~1e-16).

    Parameters
    ----------
    seed, n : int
        Random seed and number of maps (names ``synthsim01`` ...).
    npix, pixscale_kpc
        Map size and pixel scale [kpc].
    outdir : path-like, optional
        Write ``<outdir>/<sim>.fits`` (extensions ``CII``, ``HA``, header
        ``PIXKPC``, ``MOCK = T`` and the :data:`SIM_LABEL` comment).

    Returns
    -------
    list of dict
        ``{'sim', 'cii', 'ha', 'pixscale_kpc', 'label'}``.
    """
    rng = seeded_rng(seed, "mock_sim_maps")
    c = (npix - 1) / 2.0
    yy, xx = np.mgrid[0:npix, 0:npix]
    r = np.hypot(xx - c, yy - c) * pixscale_kpc
    out = []
    for i in range(n):
        rd = rng.uniform(0.6, 1.2)
        ha = np.exp(-r / rd)
        for _ in range(2):
            ang, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
            x0, y0 = c + rr * np.cos(ang) / pixscale_kpc, c + rr * np.sin(ang) / pixscale_kpc
            ha += rng.uniform(0.1, 0.4) * np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / (0.3 / pixscale_kpc) ** 2)
        ha += rng.uniform(0.002, 0.01) * np.exp(-r / rng.uniform(2.0, 3.0))  # diffuse ionised halo
        cii = rng.uniform(0.2, 0.6) * np.exp(-r / (rd * rng.uniform(0.6, 1.1)))
        cii += rng.uniform(0.0, 0.01) * cii.max() * np.exp(-r / rng.uniform(2.0, 4.0))
        norm = 1e-16 / ha.sum()
        sim = {"sim": f"synthsim{i + 1:02d}", "cii": cii * norm, "ha": ha * norm, "pixscale_kpc": float(pixscale_kpc),
               "label": SIM_LABEL}
        out.append(sim)
        if outdir is not None:
            write_sim_maps(sim, Path(outdir) / f"{sim['sim']}.fits")
    return out
