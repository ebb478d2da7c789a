"""The one seeding rule of the project: independent, reproducible random streams.

Every random draw of the workflow (Monte Carlo realisations of the line fits
and of [C II], the statistics, the [N II] bias simulation, the SYNTHETIC
mock) comes from a generator made by :func:`rng` from the workflow seed and
a few keys that name the stream.  Strings enter through a SHA-256 hash
(:func:`key_hash`; Python's ``hash`` is salted per process), integers as they
are, so a stream does not depend on the order or batching of the jobs.

Each caller keeps its own key list (documented there); changing one would
change its numbers:

- ``ismcgm.mc.rng_for``: ``(1, seed, component, region.lower(), grating.lower(), realisation)``;
- ``ismcgm.cii.noise.realisation_rng``: ``(seed, component, region, 'alma', str(realisation))``
  (joint draws of several regions: ``component`` = the galaxy id, ``region`` = ``'joint'``);
- ``ismcgm.cii.spill.transfer_matrix_realisations``: ``(seed, galaxy, 'ha_map', 'spill', realisation)``;
- ``ismcgm.decompose.halo_draws``: ``(seed, 'halo_h', galaxy, realisation)``;
- ``ismcgm.stats.make_rng``: ``(seed, ratio[, purpose])``;
- ``ismcgm.niibias.seed_sequence``: ``(seed, 'nii_bias', repr(snr))``;
- ``ismcgm.mock``: ``(seed, *keys)`` with 4-byte hashes (``hash_bytes=4``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4096)  # the same few keys name thousands of streams (one per realisation)
def _digest_int(text: str, hash_bytes: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:hash_bytes], "little")


def key_hash(text: str, hash_bytes: int = 8) -> int:
    """Integer from the first ``hash_bytes`` bytes (little endian) of the SHA-256 digest of ``text``."""
    return _digest_int(str(text), int(hash_bytes))


def seed_sequence(seed: int, *keys, hash_bytes: int = 8) -> np.random.SeedSequence:
    """``SeedSequence([seed, k1, k2, ...])``: integer keys as they are, strings through :func:`key_hash`."""
    entropy = [int(seed)] + [k if isinstance(k, (int, np.integer)) else key_hash(k, hash_bytes) for k in keys]
    return np.random.SeedSequence(entropy)


def rng(seed: int, *keys, hash_bytes: int = 8) -> np.random.Generator:
    """Generator (PCG64) of the stream named by ``keys`` (:func:`seed_sequence`)."""
    return np.random.default_rng(seed_sequence(seed, *keys, hash_bytes=hash_bytes))
