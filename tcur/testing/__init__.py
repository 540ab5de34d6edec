"""Testing helpers for users of tcur: Hypothesis strategies and reconstruction assertions.

Needs Hypothesis (``pip install tcur[test]``).
"""

from tcur.testing.assertions import assert_reconstructs, default_rtol
from tcur.testing.strategies import low_rank_matrix, matrices
from tcur.testing.tensors import (
    low_multilinear_rank_tensor,
    low_tubal_rank_tensor,
    multilinear_tensors,
    tubal_tensors,
    valid_multilinear_ranks,
)

__all__ = [
    "assert_reconstructs",
    "default_rtol",
    "low_multilinear_rank_tensor",
    "low_rank_matrix",
    "low_tubal_rank_tensor",
    "matrices",
    "multilinear_tensors",
    "tubal_tensors",
    "valid_multilinear_ranks",
]
