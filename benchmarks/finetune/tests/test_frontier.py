"""The fine-tuning frontier's protocol, records and report (:mod:`finetune`).

No model is trained here: the schedule, the learning-rate search, the record store and the
summaries are checked on synthetic records.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import finetune.methods as fm
import finetune.protocol as fp
import finetune.records as fr
import finetune.report as rep
import pytest

BUDGET = fp.Budget(10, 10, 10, epochs=1, batch_size=4, max_length=8, seeds=(0, 1, 2))


def _method(name: str = "m", grid: tuple[float, float, float] = (1e-3, 3e-3, 1e-2)) -> fm.Method:
    return fm.Method(name, fm.build_full, {}, grid)


def _train(val: float, test: float | None = None, params: int = 100, **extra: Any) -> dict:
    record = {
        "validation_accuracy": val,
        "trainable_params": params + 10,
        "adapter_params": params,
        "step_time_ms": 5.0,
        "train_time_s": 1.0,
        "peak_rss_mb": 100.0,
        "final_train_loss": 0.5,
        **extra,
    }
    if test is not None:
        record["test_accuracy"] = test
    return record


def _grid(name: str, values: dict[float, float]) -> dict[str, dict]:
    return {fr.unit_id(name, lr, 0): _train(v) for lr, v in values.items()}


def test_lr_ladder_steps_through_1_3_10() -> None:
    values = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
    for low, high in itertools.pairwise(values):
        assert fm.lr_ladder(low, 1) == pytest.approx(high)
        assert fm.lr_ladder(high, -1) == pytest.approx(low)
    assert fm.lr_ladder(3e-3, 3) == pytest.approx(0.1)


def test_grid_keeps_an_interior_best() -> None:
    m = _method()
    state = fp.grid_state(m, _grid("m", {1e-3: 0.6, 3e-3: 0.7, 1e-2: 0.65}), BUDGET)
    assert state.chosen == 3e-3 and state.missing == ()
    partial = fp.grid_state(m, _grid("m", {1e-3: 0.6}), BUDGET)
    assert partial.chosen is None and partial.missing == (3e-3, 1e-2)


def test_grid_extends_past_the_edge_of_its_best() -> None:
    m = _method()
    records = _grid("m", {1e-3: 0.6, 3e-3: 0.65, 1e-2: 0.7})
    state = fp.grid_state(m, records, BUDGET)
    assert state.chosen is None and state.missing == (3e-2,)
    records.update(_grid("m", {3e-2: 0.66}))
    assert fp.grid_state(m, records, BUDGET).chosen == 1e-2
    low = _grid("m", {1e-3: 0.7, 3e-3: 0.65, 1e-2: 0.6, 3e-4: 0.72, 1e-4: 0.73})
    capped = fp.grid_state(m, low, BUDGET)  # two extensions, the best still at the edge
    assert capped.chosen == 1e-4 and capped.grid == (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def test_grid_is_padded_to_its_size_on_the_side_of_the_better_neighbour() -> None:
    m, padded = _method(), dataclasses.replace(BUDGET, grid_size=4)
    records = _grid("m", {1e-3: 0.6, 3e-3: 0.7, 1e-2: 0.65})
    state = fp.grid_state(m, records, padded)
    assert state.chosen is None and state.missing == (3e-2,)
    records.update(_grid("m", {3e-2: 0.5}))
    state = fp.grid_state(m, records, padded)
    assert state.chosen == 3e-3 and state.grid == (1e-3, 3e-3, 1e-2, 3e-2)
    records.update(_grid("m", {3e-2: 0.8}))  # the pad became the best: extended past it
    assert fp.grid_state(m, records, padded).missing == (0.1,)
    extended = _grid("m", {1e-3: 0.6, 3e-3: 0.65, 1e-2: 0.7, 3e-2: 0.66})
    assert fp.grid_state(m, extended, padded).chosen == 1e-2  # already 4 rates: no pad


def test_pending_runs_every_seed_0_before_other_seeds() -> None:
    a, b = _method("a"), _method("b")
    records = _grid("a", {1e-3: 0.6, 3e-3: 0.7, 1e-2: 0.65})
    ready, unfinished = fp.pending([a, b], records, BUDGET)
    kinds = [(u.method, u.kind) for u in ready]
    phase1 = [("a", "test"), ("b", "grid"), ("b", "grid"), ("b", "grid")]
    assert kinds == [*phase1, ("a", "seed"), ("a", "seed")]
    assert unfinished == 3 + (3 + 3)
    for unit in ready:
        if unit.method == "a":
            records[unit.uid] = _train(0.7, 0.71)
    records.update(_grid("b", {1e-3: 0.6, 3e-3: 0.7, 1e-2: 0.65}))
    for unit in fp.pending([a, b], records, BUDGET)[0]:
        records[unit.uid] = _train(0.7, 0.72)
    assert fp.pending([a, b], records, BUDGET) == ([], 0)


def test_records_are_written_atomically_and_read_back(tmp_path: Path) -> None:
    store = fr.RecordStore(tmp_path / "runs", tmp_path / "state")
    assert store.claim("x")
    assert not store.claim("x")  # held by this live process
    store.put("x", {"a": 1})
    assert store.records() == {"x": {"a": 1}}
    assert sorted(p.name for p in store.root.iterdir()) == ["x.json"]  # no claim, no temp file
    assert not store.claim("x")  # finished


def test_a_dead_workers_claim_is_taken_over(tmp_path: Path) -> None:
    store = fr.RecordStore(tmp_path / "runs", tmp_path / "state")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    claim = store.root / "y.claim"
    claim.write_text(json.dumps({"boot": fr.boot_id(), "pid": int(dead.stdout)}))
    assert store.claimed() == set()
    assert store.claim("y")
    assert json.loads(claim.read_text())["pid"] == os.getpid()
    store.release("y")
    assert not claim.exists()


def _finished(name: str, lr: float, tests: list[float], params: int) -> dict[str, dict]:
    records = _grid(name, {1e-3: 0.5, 3e-3: 0.5, 1e-2: 0.5})
    records = {k: {**v, "adapter_params": params} for k, v in records.items()}
    records[fr.unit_id(name, 1e-3, 0)]["validation_accuracy"] = 0.5
    records[fr.unit_id(name, 3e-3, 0)]["validation_accuracy"] = 0.7
    records[fr.unit_id(name, lr, 0, test=True)] = {
        "test_accuracy": tests[0],
        "adapter_file_bytes": 1234,
    }
    for seed, acc in zip((1, 2), tests[1:], strict=False):
        records[fr.unit_id(name, lr, seed)] = _train(0.7, acc, params)
    return records


def test_summary_and_headline_on_partial_results() -> None:
    table = [_method("head_only"), _method("tcurlora_all_linear"), _method("full")]
    records = {
        **_finished("head_only", 3e-3, [0.70, 0.71, 0.72], 0),
        **_finished("tcurlora_all_linear", 3e-3, [0.74, 0.73], 2304),
        **_grid("full", {1e-3: 0.8}),
    }
    summary = rep.summarise(table, records, BUDGET)
    head, tcur = summary["head_only"], summary["tcurlora_all_linear"]
    assert head["seeds_done"] == [0, 1, 2] and head["accuracy_mean"] == pytest.approx(0.71)
    assert head["accuracy_std"] == pytest.approx(0.01)
    assert head["adapter_file_bytes"] == 1234 and head["chosen_lr"] == 3e-3
    assert tcur["seeds_done"] == [0, 1] and tcur["accuracy"] == [0.74, 0.73]
    assert summary["full"]["chosen_lr"] is None and "accuracy" not in summary["full"]
    rows = rep.headline(summary)["rows"]
    assert [r["method"] for r in rows] == ["tcurlora_all_linear vs head_only"]
    assert rows[0]["met"] is True and rows[0]["ratio"].startswith("+2.5 points")
    below = {**tcur, "accuracy": [0.74, 0.70]}
    assert rep.headline({**summary, "tcurlora_all_linear": below})["rows"][0]["met"] is False


def test_methods_have_unique_names_and_three_rate_grids() -> None:
    table = fm.methods()
    assert list(table)[:2] == ["head_only", "full"]
    expected = {
        "head_only",
        "full",
        "lora_r1",
        "lora_r8",
        "vera",
        "curlora",
        "tcurlora_r4",
        "tcurlora_r8",
        "tcurlora_r16",
        "tcurlora_r32",
        "tcurlora_reference",
        "tcurlora_all_linear",
    }
    assert expected <= set(table)
    for method in table.values():
        assert len(method.grid) == 3
        assert [fm.lr_ladder(method.grid[0], k) for k in range(3)] == pytest.approx(method.grid)


def test_plot_joins_families_and_survives_partial_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    table = [
        fm.Method("head_only", fm.build_head_only, {}, (1e-3, 3e-3, 1e-2)),
        fm.Method("tcurlora_r4", fm.build_tcurlora, {}, (1e-3, 3e-3, 1e-2), "tCURLoRA"),
        fm.Method("tcurlora_r8", fm.build_tcurlora, {}, (1e-3, 3e-3, 1e-2), "tCURLoRA"),
        fm.Method("vera", fm.build_peft, {}, (1e-3, 3e-3, 1e-2)),
    ]
    records = {
        **_finished("head_only", 3e-3, [0.70, 0.71, 0.72], 0),
        **_finished("tcurlora_r4", 3e-3, [0.74], 192),
        **_finished("tcurlora_r8", 3e-3, [0.75, 0.76, 0.74], 768),
    }
    summary = rep.summarise(table, records, BUDGET)
    path = tmp_path / "frontier.png"
    rep.plot(summary, table, path, "title")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_keeps_a_far_reference_off_the_axis(tmp_path: Path) -> None:
    # The pretrained model's perplexity (80.8) drawn at x = 1 squashed the trained methods
    # (50-55) into the bottom tenth of the causal-LM plot, labelled "80.8%".
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    table = [
        fm.Method("base", fm.build_head_only, {}, (1e-3,)),
        fm.Method("lora_r1", fm.build_peft, {}, (1e-3,), "LoRA"),
        fm.Method("lora_r8", fm.build_peft, {}, (1e-3,), "LoRA"),
    ]

    def entry(values: list[float], params: int) -> dict[str, Any]:
        return {
            "adapter_params": params,
            "perplexity": values,
            "perplexity_mean": sum(values) / len(values),
            "perplexity_std": None,
        }

    summary = {"base": entry([80.8], 0), "lora_r1": entry([51.3], 57600)}
    summary["lora_r8"] = entry([50.8], 460800)
    seen: dict[str, Any] = {}
    original = matplotlib.axes.Axes.legend

    def spy(ax: Any, *args: Any, **kwargs: Any) -> Any:
        seen["labels"] = ax.get_legend_handles_labels()[1]
        seen["ylim"] = ax.get_ylim()
        return original(ax, *args, **kwargs)

    matplotlib.axes.Axes.legend = spy  # type: ignore[method-assign]
    try:
        rep.plot(summary, table, tmp_path / "ppl.png", "title", "perplexity")
    finally:
        matplotlib.axes.Axes.legend = original  # type: ignore[method-assign]
    assert "pretrained, not trained (80.80): off the axis, above" in seen["labels"]
    assert seen["ylim"][1] < 60 and not any("%" in label for label in seen["labels"])
    assert rep.on_axis(75.5, rep.least_span("accuracy", 81.0, 82.1))


def test_grid_of_a_method_that_trains_nothing_stops_at_its_first_rate() -> None:
    # The pretrained model ("base") on a one-rate grid used to be extended past its edge:
    # two more evaluations of the same untrained model.
    m = _method("base", (1e-3,))
    records = {fr.unit_id("base", 1e-3, 0): _train(0.5, trainable_params=0)}
    state = fp.grid_state(m, records, BUDGET)
    assert state.chosen == 1e-3 and state.missing == ()
    trained = fp.grid_state(_method("m", (1e-3,)), _grid("m", {1e-3: 0.5}), BUDGET)
    assert trained.chosen is None and trained.missing == (3e-4,)  # extended as before


def test_report_shows_every_seed_on_disk(tmp_path: Path) -> None:
    # A report rebuilt with the screen's budget (seed 0: --report-only, or the screen's own
    # worker) used to drop the finalists' seeds 1 and 2 from the summary and the comparisons.
    pytest.importorskip("matplotlib")
    import finetune.runner as runner

    store = fr.RecordStore(tmp_path / "runs", tmp_path / "state")
    for uid, record in _finished("m", 3e-3, [0.70, 0.71, 0.72], 50).items():
        store.put(uid, {**record, "seed": int(uid.split("__seed")[1].split("__")[0])})
    screen = dataclasses.replace(BUDGET, seeds=(0,))
    path = runner.write_report(
        tmp_path, "r", screen, [_method()], store, [], {"question": "q?"}, "t"
    )
    summary = json.loads(path.read_text())["methods"]["m"]
    assert summary["seeds_done"] == [0, 1, 2]
    assert summary["accuracy"] == pytest.approx([0.70, 0.71, 0.72])
