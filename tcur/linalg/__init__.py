"""Pure math: matrix CUR, the t-product algebra, tensor CUR, selection rules, n-mode products.

Every function takes NumPy arrays or torch tensors and returns the same kind on the same device;
arrays of other array-API libraries (``array_api_strict``, JAX, ...) are computed on through their
own namespace and come back in their kind. :func:`cur` (and :func:`tcur.decompose`) also take
``scipy.sparse`` matrices (:mod:`tcur.linalg.sparse`) and Dask arrays (:mod:`tcur.linalg.lazy`),
read only through a fixed number of passes (:mod:`tcur.linalg.products`).
As in SciPy, the functions that compute with their inputs take ``check_finite=True``: each input
array is scanned for NaN/Inf once per call (internal steps never scan again), and
``check_finite=False`` skips the scan, which on a GPU is a device synchronisation. NumPy integer
scalars are accepted wherever an ``int`` is (ranks, modes, sizes); ``bool`` is not a rank.
"""

from tcur.linalg.errors import relative_error
from tcur.linalg.matrix_cur import CUR, cur
from tcur.linalg.modewise import TuckerCUR, chidori_cur, fiber_cur
from tcur.linalg.selection import deim, leverage_scores, qdeim
from tcur.linalg.sparse import factored_error
from tcur.linalg.tensor_cur import TCUR, tcur
from tcur.linalg.tensor_ops import fold, mode_dot, multi_mode_dot, unfold
from tcur.linalg.tproduct import teye, tinv, tpinv, tprod, ttranspose
from tcur.linalg.tubal_svd import tsvd, tubal_rank

__all__ = [
    "CUR",
    "TCUR",
    "TuckerCUR",
    "chidori_cur",
    "cur",
    "deim",
    "factored_error",
    "fiber_cur",
    "fold",
    "leverage_scores",
    "mode_dot",
    "multi_mode_dot",
    "qdeim",
    "relative_error",
    "tcur",
    "teye",
    "tinv",
    "tpinv",
    "tprod",
    "tsvd",
    "ttranspose",
    "tubal_rank",
    "unfold",
]
