"""ismcgm: ISM vs CGM emission-line ratios of z = 4-6 galaxies.

The science code of the Snakemake workflow in this repository, one module
per concern: ``instrument`` (lines, gratings, LSF), ``io`` (sample table and
FITS readers with clear errors), ``mock`` (the synthetic survey), ``masks``,
``extract``, ``fit``, ``mc``, ``dust``, ``ratios``, ``stats``, ``cloudy``,
``cii``, ``abundances`` and ``plots``.
"""

__version__ = "0.1.0"
