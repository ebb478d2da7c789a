"""The paper's figures, one module per figure (``fig1_masks``, ``fig2_spectra``, ...).

All figures use the non-interactive Agg backend and are saved as PDF and PNG.
Figures made from the mock survey carry a "SYNTHETIC MOCK DATA" label.
"""

import matplotlib

matplotlib.use("Agg")
