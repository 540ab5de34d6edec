"""The verdicts of the paired-seed fine-tuning benchmarks, read-only, for the demo's conclusion.

``benchmarks/finetune/causal_lm.py`` (SmolLM2-135M, held-out perplexity),
``benchmarks/finetune/discriminating.py`` (MiniLM on every linear layer, three epochs of Rotten
Tomatoes) and ``benchmarks/finetune/discriminating_imdb.py`` (the same on IMDB) compare methods
over paired seeds; each report's headline starts with its claims (a comparison, the
difference with its 95% interval, the target and whether it is met) and ``discriminating``
says whether the benchmark can tell methods apart at all (LoRA r8 beats LoRA r1 and full
fine-tuning beats LoRA r8). The demo prints those rows under a heading that says so, after its
own figures, so that what it concludes is what the README and the results page say.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcur_demo.frontier import RESULTS

BENCHMARKS = {
    "causal LM (SmolLM2-135M, perplexity)": RESULTS / "finetune_causal_lm.json",
    "classifier (MiniLM, every linear layer, 3 epochs)": RESULTS / "finetune_discriminating.json",
    "classifier (MiniLM, IMDB, every linear layer)": RESULTS / "finetune_discriminating_imdb.json",
}
"""The paired-seed reports of this checkout, by the name the demo prints."""


@dataclass(frozen=True)
class Verdict:
    """One claim of a paired-seed report."""

    benchmark: str
    comparison: str
    figure: str
    difference: str
    target: str
    met: bool
    discriminating: bool | None = None
    """The benchmark's ``discriminating`` (``None``: not decided yet)."""

    def sentence(self) -> str:
        """The comparison, its difference and interval, and whether the target holds."""
        outcome = "met" if self.met else "not met"
        return f"{self.comparison}, {self.figure}: {self.difference}; {self.target}: {outcome}."

    def summary(self) -> dict[str, Any]:
        """The entry of ``summary.json``."""
        return dict(vars(self))


def load(benchmarks: dict[str, Path] | None = None) -> list[Verdict]:
    """The claim rows (those with a target) of every report in ``benchmarks``, in order.

    Raises
    ------
    FileNotFoundError
        If a report is missing (the message names the module that writes it).

    Examples
    --------
    >>> verdicts = load()
    >>> {v.benchmark for v in verdicts} <= set(BENCHMARKS)
    True
    """
    verdicts = []
    for name, path in (BENCHMARKS if benchmarks is None else benchmarks).items():
        if not path.is_file():
            module = path.stem.removeprefix("finetune_")
            raise FileNotFoundError(
                f"no paired-seed report at {path}; run make finetune FT={module}"
            )
        report = json.loads(path.read_text(encoding="utf-8"))
        tells = report.get("discriminating")
        rows = report["headline"]["rows"]
        verdicts += [_verdict(name, row, tells) for row in rows if row.get("target")]
    return verdicts


def sentences(verdicts: list[Verdict], benchmarks: Iterable[str] = ()) -> list[str]:
    """The demo's closing block: per benchmark a heading, then one wrapped item per verdict.

    ``benchmarks`` are the names to report even without a verdict yet (a report whose methods
    do not share enough paired seeds has no claim rows); the others come in verdict order.

    Examples
    --------
    >>> v = Verdict("LM", "a vs b", "5.0 vs 4.0 (3 paired seeds)", "-25 %", "matches", False, True)
    >>> print("\\n".join(sentences([v], ["LM", "IMDB"])))
    Paired seeds, LM (discriminating: LoRA r8 beats LoRA r1, full fine-tuning beats LoRA r8):
    - a vs b, 5.0 vs 4.0 (3 paired seeds): -25 %; matches: not met.
    Paired seeds, IMDB:
    - no comparison has enough paired seeds yet (runs in progress).
    """
    lines = []
    for benchmark in dict.fromkeys([*benchmarks, *(v.benchmark for v in verdicts)]):
        tells = {v.discriminating for v in verdicts if v.benchmark == benchmark} - {None}
        heading = f"Paired seeds, {benchmark}{_discrimination(tells)}:"
        lines.append(textwrap.fill(heading, width=100, subsequent_indent="  "))
        items = [v.sentence() for v in verdicts if v.benchmark == benchmark] or [
            "no comparison has enough paired seeds yet (runs in progress)."
        ]
        lines += [
            textwrap.fill(item, width=100, initial_indent="- ", subsequent_indent="  ")
            for item in items
        ]
    return lines


DISCRIMINATION = {
    True: " (discriminating: LoRA r8 beats LoRA r1, full fine-tuning beats LoRA r8)",
    False: " (not discriminating: LoRA r8 does not beat LoRA r1 or full fine-tuning does not beat"
    " LoRA r8, so these rows do not decide the study's targets)",
}


def _discrimination(tells: set[bool]) -> str:
    """The heading's note on whether the benchmark tells methods apart (empty if undecided)."""
    return DISCRIMINATION[tells.pop()] if len(tells) == 1 else ""


def _verdict(benchmark: str, row: dict[str, Any], discriminating: bool | None) -> Verdict:
    return Verdict(
        benchmark=benchmark,
        comparison=str(row["method"]),
        figure=str(row["figure"]),
        difference=str(row["ratio"]),
        target=str(row["target"]),
        met=bool(row["met"]),
        discriminating=discriminating,
    )
