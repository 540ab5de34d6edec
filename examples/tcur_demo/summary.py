"""The demo's outputs: ``summary.json`` (every printed figure) and one summary figure (PNG).

Scalar keys of ``summary.json`` (always, with ``--skip-finetune`` only the step-1 ones):

- ``decompose_error_vs_scipy`` / ``decompose_speedup_vs_scipy``: the worst over step 1's data
  sets and ranks of decompose's error over SciPy ID-CUR's and of ID-CUR's time over
  decompose's; ``..._by_data_set`` beside them, and ``decompose_error_vs_svd``;
- ``tcur_error_vs_tsvd`` (worst over the ranks) and ``tcur_speedup_vs_tsvd``;
- per method of step 2 (``head_only``, ``tcurlora``, ``lora_r1``, ``lora_r8``):
  ``<name>_accuracy`` (demo, one seed), ``<name>_params`` (adapter parameters, the head not
  counted), ``<name>_trainable_params``, ``<name>_lr``, ``<name>_step_ms``, ``<name>_train_s``
  and ``<name>_label`` (the printed name);
- ``seconds``: the demo's wall time.

Beside them: every table row (``decompose_rows``, ``tcur_rows``, ``tol``), the frontier's 3-seed
figures (``frontier``, by method name), the paired-seed benchmarks' verdicts (``paired_verdicts``,
:mod:`tcur_demo.paired`) and the printed sentences. The summary figure
(:mod:`tcur_demo.figure`) is drawn from this dictionary alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tcur_demo.decomposition import Step1
from tcur_demo.finetune import METHODS, Outcome
from tcur_demo.frontier import Frontier
from tcur_demo.paired import Verdict

SUMMARY_JSON = "summary.json"


def build(
    step1: Step1,
    outcomes: Sequence[Outcome],
    frontier: Frontier | None,
    sentences: Sequence[str],
    seconds: float,
    quick: bool,
    verdicts: Sequence[Verdict] = (),
) -> dict[str, Any]:
    """Everything the demo printed, as one JSON-ready dictionary."""
    summary: dict[str, Any] = {"quick": quick}
    summary |= step1.summary()
    for outcome in outcomes:
        summary |= outcome.summary()
    if frontier is not None and outcomes:
        summary["frontier"] = {
            m.name: frontier[m.frontier_key].summary() | {"key": m.frontier_key} for m in METHODS
        }
        summary["frontier_source"] = frontier.path.name
    if verdicts:
        summary["paired_verdicts"] = [v.summary() for v in verdicts]
    summary["step2_sentences"] = list(sentences)
    summary["seconds"] = seconds
    return summary


def write_json(summary: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SUMMARY_JSON
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return path
