"""tcur: CUR and tensor-CUR decompositions for NumPy and PyTorch, and CUR-based fine-tuning.

``import tcur`` never imports torch. ``tcur.adapters`` (PyTorch) and ``tcur.testing``
(Hypothesis) are imported on demand.
"""

from tcur import linalg
from tcur.decomposition import decompose

__version__ = "0.1.0"

__all__ = ["__version__", "decompose", "linalg"]
