"""The research entry points' method tables and report pairs (nothing is trained here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from shutil import ignore_patterns
from typing import Any

import finetune.causal_lm as lm
import finetune.discriminating as disc
import finetune.discriminating_imdb as imdb
import finetune.report as rep
import finetune.runner as runner
import finetune.variants as fv
import numpy as np
import pytest
from _common import RESULTS


@pytest.mark.parametrize("module", [disc, lm])
def test_tables_have_unique_names_known_claims_and_valid_variants(module: object) -> None:
    table = module.methods()  # type: ignore[attr-defined]
    names = [m.name for m in table]
    assert len(names) == len(set(names))
    assert {"lora_r1", "lora_r8", "tcurlora_reference"} <= set(names)
    assert any(n.startswith("tinylora_u") for n in names)
    for claim in module.CLAIMS:  # type: ignore[attr-defined]
        assert claim.a in names and claim.b in names and claim.need in ("beats", "matches")
    for method in table:
        assert 1 <= len(method.grid) <= 3
        if method.name.startswith("tcv_"):
            config = {k: v for k, v in method.config.items() if k != "head_lr_scale"}
            fv.VariantConfig(**config)  # every variant's options are valid
    assert all(len(m.grid) == 1 for m in module.methods(True))  # type: ignore[attr-defined]


def test_discriminating_schedules_its_check_first() -> None:
    first = [m.name for m in disc.methods()][:4]
    assert first == ["lora_r1", "lora_r8", "full", "head_only"]
    assert disc.FULL.epochs == 3 and lm.FULL.metric == "perplexity"


def test_runner_refuses_unknown_methods(tmp_path: object) -> None:
    with pytest.raises(SystemExit, match="unknown method"):
        disc.main(["--only", "nope", "--out", str(tmp_path)])
    parsed = runner.parser(None).parse_args(["--seeds", "0", "1", "--resume"])
    assert parsed.seeds == [0, 1] and parsed.resume


def test_headline_rows_come_from_the_paired_differences() -> None:
    a = {"seeds_done": [0, 1, 2], "accuracy": [0.82, 0.83, 0.82], "adapter_params": 10}
    b = {"seeds_done": [0, 1, 2], "accuracy": [0.80, 0.81, 0.80], "adapter_params": 20}
    a["title"], b["title"] = "A r1", "B"  # what tables show, not the record keys
    for entry in (a, b):
        entry["accuracy_mean"] = sum(entry["accuracy"]) / 3  # type: ignore[arg-type]
        entry["accuracy_std"] = float(np.std(entry["accuracy"], ddof=1))
        entry["chosen_lr"] = 1e-3
    summary = {"a": a, "b": b}
    differences = rep.comparisons(summary, [rep.Claim("a", "b")], "accuracy")
    rows = rep.paired_headline("q?", summary, differences, "accuracy")["rows"]
    assert rows[0]["method"] == "A r1 vs B" and rows[0]["met"] is True
    assert rows[0]["ratio"].startswith("+2.00 points, 95% CI")
    assert rows[0]["ratio"].endswith(": beats")
    assert [r["method"] for r in rows[1:]] == ["A r1", "B"]  # then the ablation table
    assert rows[1]["figure"] == "accuracy 82.33 +- 0.58 (seeds 0, 1, 2; rate 0.001)"
    a["chosen_lr_at_grid_edge"] = True
    edge = rep.paired_headline("q?", summary, differences, "accuracy")["rows"][1]["figure"]
    assert edge.endswith("rate 0.001, at the grid's edge)")
    only = rep.paired_headline("q?", summary, {}, "accuracy")["rows"]
    assert [r["method"] for r in only] == ["A r1", "B"] and only[0]["met"] is None


def test_headline_means_are_over_the_shared_seeds() -> None:
    a = {"seeds_done": [0, 1, 2, 3, 4], "accuracy": [0.80, 0.81, 0.80, 0.90, 0.90]}
    b = {"seeds_done": [0, 1, 2], "accuracy": [0.78, 0.79, 0.78]}
    for entry in (a, b):
        entry |= {"accuracy_mean": float(np.mean(entry["accuracy"])), "accuracy_std": 0.01}
        entry |= {"chosen_lr": 1e-3, "adapter_params": 1, "title": "t"}
    differences = rep.comparisons({"a": a, "b": b}, [rep.Claim("a", "b")], "accuracy")
    row = rep.paired_headline("q?", {"a": a, "b": b}, differences, "accuracy")["rows"][0]
    assert row["figure"].startswith("accuracy 80.33 vs 78.33 (higher is better; 3 paired")
    assert row["ratio"].startswith("+2.00 points")


@pytest.mark.parametrize(
    "module", [lm, disc, imdb], ids=["causal_lm", "discriminating", "discriminating_imdb"]
)
def test_committed_reports_are_what_the_code_makes_of_the_records(
    module: Any, tmp_path: Path
) -> None:
    """The committed report was rebuilt by this code from the committed records (a report left
    by a worker running an older snapshot would differ, and the demo prints its claims)."""
    committed = RESULTS / f"{module.NAME}.json"
    shutil.copytree(RESULTS / module.NAME, tmp_path / module.NAME, ignore=ignore_patterns("*.log"))
    rebuilt = module.main(["--report-only", "--out", str(tmp_path)])
    assert rebuilt["headline"] == json.loads(committed.read_text())["headline"]


def test_imdb_check_reuses_the_pilot_runs_as_first_grid_points() -> None:
    rt = {m.name: m for m in disc.methods()}
    table = imdb.methods()
    check = table[: len(imdb.CHECK)]
    assert [m.name for m in check] == ["lora_r1", "lora_r8", "full", "head_only"]
    pilot_rates = {"lora_r1": 3e-3, "lora_r8": 1e-3, "full": 1e-4, "head_only": 3e-2}
    for method in check:
        assert method.config == rt[method.name].config and method.grid == rt[method.name].grid
        assert pilot_rates[method.name] in method.grid
    assert imdb.FULL.task == "imdb" and imdb.QUICK.task == "imdb"
    assert {c.a for c in imdb.CLAIMS} | {c.b for c in imdb.CLAIMS} <= {m.name for m in table}


def test_imdb_variants_are_the_rotten_tomatoes_library_methods() -> None:
    """Stage 4 runs the library's tCURLoRA on the check's placement; the gradient r32 method
    differs from Rotten Tomatoes' gradient r5 only in rank, the head10 one only in the head's
    learning-rate scale (which :func:`finetune.methods.build_model` applies)."""
    rt = {m.name: m for m in disc.methods()}
    table = {m.name: m for m in imdb.methods()}
    stage4 = len(imdb.CHECK) + len(imdb.VARIANTS)
    assert tuple(table)[len(imdb.CHECK) : stage4] == imdb.VARIANTS
    assert tuple(table)[stage4:] == imdb.CONTROLS
    for name in imdb.CONTROLS:  # Rotten Tomatoes' controls, and TinyLoRA at r5's budget
        assert table[name] == (rt[name] if name in rt else disc.tinylora(5))
    assert table["tinylora_u25"].config["u"] == 25 and table["tinylora_u25"].config["r"] == 5
    r32, r5 = table["tcurlora_gradient_r32"], table["tcurlora_gradient_r5"]
    assert r5 == rt["tcurlora_gradient_r5"] and r32.grid == r5.grid
    assert {**r32.config, "rank": 5} == r5.config
    head10 = table["tcurlora_gradient_r5_head10"]
    assert head10.config == {**r5.config, "head_lr_scale": 10.0} and head10.grid == r5.grid
    assert head10.title != r5.title
    quick = {m.name: m for m in imdb.methods(quick=True)}
    assert all(len(quick[name].grid) == 1 for name in imdb.VARIANTS)
