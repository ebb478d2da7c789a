"""The one region-naming rule: components, regions and mask extensions of a galaxy.

A galaxy ``<id>`` has the regions ``ISM`` and ``CGM`` (mask extensions
``ISM``, ``CGM``); a merger has two components ``<id>_a`` and ``<id>_b`` whose
regions are the mask extensions ``ISM_A``, ``CGM_A``, ``ISM_B``, ``CGM_B``.
The workflow (``workflow/rules/common.smk``), [C II] and the tests use these
functions only.
"""

from __future__ import annotations

#: Regions of every component, in file order.
REGIONS = ("ISM", "CGM")

#: Suffixes of the two components of a merger (mask extension ``<REGION>_<S>``).
MERGER_SIDES = ("A", "B")


def components(gid: str, merger: bool) -> list[str]:
    """Component names of a galaxy: ``[<id>]`` or ``[<id>_a, <id>_b]``."""
    return [f"{gid}_{s.lower()}" for s in MERGER_SIDES] if merger else [gid]


def galaxy_regions(gid: str, merger: bool) -> list[tuple[str, str, str]]:
    """``(component, region, mask extension)`` triples of a galaxy, in file order."""
    if merger:
        return [(f"{gid}_{s.lower()}", r, f"{r}_{s}") for s in MERGER_SIDES for r in REGIONS]
    return [(gid, r, r) for r in REGIONS]


def extension_region(gid: str, extension: str) -> tuple[str, str]:
    """``(component, region)`` of a mask extension: ``ISM`` -> (id, ISM), ``CGM_B`` -> (id_b, CGM)."""
    base, _, suffix = extension.partition("_")
    return (f"{gid}_{suffix.lower()}" if suffix else gid), base.upper()
