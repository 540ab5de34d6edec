"""Testing helpers for users of tcur: Hypothesis strategies and reconstruction assertions.

Needs Hypothesis (``pip install tcur[test]``).
"""

from tcur.testing.assertions import assert_reconstructs, default_rtol
from tcur.testing.strategies import low_rank_matrix, matrices

__all__ = ["assert_reconstructs", "default_rtol", "low_rank_matrix", "matrices"]
