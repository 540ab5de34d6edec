"""Result types of matrix CUR and t-CUR, shared by every engine (dense, sparse, Dask).

Each result carries its explicit factors ``C``, ``U``, ``R`` and, when the library made it, the
stable form of :mod:`tcur.linalg.orthonormal` that :meth:`CUR.reconstruct` evaluates:

- ``result.reconstruct()`` is within a few ``eps ||A||`` of ``C pinv(C) A pinv(R) R`` (the
  orthogonal projection onto the chosen columns and rows, ``middle="optimal"``) or of
  ``C pinv(A[rows][:, cols]) R`` (``middle="pinv"``), at every rank, however ill-conditioned
  ``C`` and ``R`` are.
- ``C @ U @ R`` multiplied by hand is accurate to about ``sqrt(eps)`` relative: ``U`` is a
  pseudo-inverse truncated at ``rtol = sqrt(eps / 10)`` (see :func:`tcur.linalg.cur`), because an
  explicit middle factor multiplies round-off by the condition numbers of ``C`` and ``R``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcur._backend import Array, fields_equal, is_complex, is_torch
from tcur.linalg.orthonormal import Projection
from tcur.linalg.tproduct import from_fourier, tprod


def _with_explicit_gradient(stable: Array, explicit: Array) -> Array:
    """``stable``'s value with ``explicit``'s gradient: ``explicit - explicit.detach()`` is
    exactly zero, so the sum equals ``stable`` while autograd differentiates ``explicit`` (the
    same function of ``A`` in exact arithmetic)."""
    return stable + (explicit - explicit.detach())


def _needs_gradient(*factors: Array) -> bool:
    if not is_torch(factors[0]):
        return False
    import torch  # torch input: already imported by the caller

    return torch.is_grad_enabled() and any(f.requires_grad for f in factors)


@dataclass(frozen=True, eq=False)
class Factors:
    """The fields of every CUR-type result (:class:`CUR`, :class:`TCUR`): the factors ``C``,
    ``U``, ``R``, the indices, the rank, and the stable ``form`` (not compared)."""

    C: Array
    U: Array
    R: Array
    rows: Array
    cols: Array
    rank: int | None = None
    form: Projection | None = field(default=None, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        """Equal to a result of the same class whose arrays have the same kind, shape, dtype
        and entries (``form`` is not compared); unhashable, like the arrays it holds."""
        return bool(fields_equal(self, other)) if type(other) is type(self) else NotImplemented

    def _evaluated(
        self, stable: Callable[[Projection], Array], explicit: Callable[[], Array]
    ) -> Array:
        """``stable(form)`` when there is a form (with ``explicit()``'s gradient for torch input
        that needs one), else ``explicit()``."""
        if self.form is None:
            return explicit()
        if _needs_gradient(self.C, self.U, self.R):
            return _with_explicit_gradient(stable(self.form), explicit())
        return stable(self.form)


@dataclass(frozen=True, eq=False)
class CUR(Factors):
    """Result of :func:`tcur.linalg.cur`: ``A ~ C @ U @ R`` with ``C = A[:, cols]`` and
    ``R = A[rows, :]``.

    Attributes
    ----------
    C : array of shape (m, n_cols)
    U : array of shape (n_cols, n_rows)
    R : array of shape (n_rows, n)
    rows, cols : integer arrays
        Selected row and column indices, of the input's array kind.
    rank : int or None
        The target rank of the decomposition: the ``rank`` passed, or the one found for
        ``tol=``.
    form : Projection or None
        The same decomposition in orthonormal coordinates (:mod:`tcur.linalg.orthonormal`);
        ``None`` for a result built by hand. For ``scipy.sparse`` input its bases are dense
        ``m x n_cols`` and ``n x n_rows`` arrays (the size of dense ``C`` and ``R``).
    """

    def reconstruct(self) -> Array:
        """The approximation of ``A``, evaluated stably.

        Through :attr:`form`: within a few ``eps ||A||`` of the exact ``C pinv(C) A pinv(R) R``
        (``middle="optimal"``) or ``C pinv(A[rows][:, cols]) R`` (``middle="pinv"``), however
        ill-conditioned ``C`` and ``R`` are. ``C @ U @ R`` multiplied by hand agrees with it to
        about ``sqrt(eps)`` relative. Without a form, ``C @ (U @ R)``. For torch input autograd
        flows as through ``C @ U @ R``.
        """
        return self._evaluated(Projection.value, lambda: self.C @ (self.U @ self.R))


@dataclass(frozen=True, eq=False)
class TCUR(Factors):
    """Result of :func:`tcur.linalg.tcur`: ``A ~ C * U * R`` under the t-product.

    Attributes
    ----------
    C : array of shape (n1, n_cols, n3)
        ``A[:, cols, :]``.
    U : array of shape (n_cols, n_rows, n3)
    R : array of shape (n_rows, n2, n3)
        ``A[rows, :, :]``.
    rows, cols : integer arrays
        Selected horizontal and lateral slice indices, of the input's array kind.
    rank : int or None
        The target tubal rank: the ``rank`` passed, or the one found for ``tol=``.
    form : Projection or None
        The decomposition's Fourier slices in orthonormal coordinates (one matrix CUR per
        slice; :mod:`tcur.linalg.orthonormal`); ``None`` for a result built by hand.
    """

    def reconstruct(self) -> Array:
        """The approximation of ``A``, evaluated stably slice by slice in the Fourier domain (see
        :meth:`CUR.reconstruct`); without a form, the t-product ``C * U * R``. Differentiable for
        torch input; the factors are not scanned for NaN/Inf again."""
        n3, real = self.C.shape[2], not is_complex(self.C)
        return self._evaluated(
            lambda form: from_fourier(form.value(), n3, real),
            lambda: tprod(self.C, self.U, self.R, check_finite=False),
        )
