"""The command line and the work loop the research entry points share (``discriminating``,
``causal_lm``): options, resumable workers over :mod:`finetune.records`, and the report file.

Options: ``--quick`` (tiny budget, its own record folder, numbers mean nothing), ``--resume``
(continue from the records), ``--report-only``, ``--only METHOD ...``, ``--seeds S ...`` (the
first is the grid's seed: the screen runs seed 0; the finalists add seeds into the same records
with ``--seeds 0 5 6 ...``, whose seed-0 grid and test are found on disk: a unit's id does not
depend on the other seeds), ``--out DIR`` (where ``<name>/`` records and ``<name>.json``/``.png``
go; default ``benchmarks/results``), ``--progress``, ``--threads``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import RESULTS, base_parser, machine, prepare

from finetune.methods import Method
from finetune.protocol import Budget, pending, run_unit
from finetune.records import RecordStore, write_atomic
from finetune.report import (
    Claim,
    comparisons,
    discriminates,
    paired_headline,
    plot,
    summarise,
)

__all__ = ["main", "parser", "work", "write_report"]

ExperimentFactory = Callable[[Budget, bool], Any]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The shared options (see the module docstring)."""
    p = base_parser(doc)
    p.add_argument("--resume", action="store_true", help="continue from existing records")
    p.add_argument("--report-only", action="store_true", help="only rebuild JSON and plot")
    p.add_argument("--progress", action="store_true", help="show tqdm bars")
    p.add_argument("--only", nargs="+", metavar="METHOD", help="run only these methods")
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="seeds (default: the budget's); the first is the grid's, so add seeds as '0 5 6'",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return p


def log(message: str) -> None:
    """Print ``message`` with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def work(
    exp: Any,
    table: Sequence[Method],
    store: RecordStore,
    after_unit: Callable[[], None],
) -> None:
    """Take ready units of ``table`` until none is left; ``after_unit()`` after each."""
    budget = exp.budget
    metric = budget.metric
    while True:
        ready, unfinished = pending(list(table), store.records(), budget)
        if not unfinished:
            return
        unit = next((u for u in ready if store.claim(u.uid)), None)
        if unit is None:
            time.sleep(15)  # the remaining units are another worker's
            continue
        log(f"start {unit.uid} ({unit.kind})")
        method = next(m for m in table if m.name == unit.method)
        try:
            record = run_unit(exp, method, unit, store)
        except BaseException:
            store.release(unit.uid)
            raise
        store.put(unit.uid, record)
        value = record.get(f"test_{metric}", record.get(f"validation_{metric}"))
        log(f"done  {unit.uid}: {metric} {value:.4f} in {record['wall_s']:.0f}s")
        after_unit()


def write_report(
    out: Path,
    name: str,
    budget: Budget,
    table: Sequence[Method],
    store: RecordStore,
    claims: Sequence[Claim],
    about: dict[str, Any],
    title: str,
) -> Path:
    """Rebuild ``<out>/<name>.json`` (and ``.png`` once a method has a test value).

    Every seed on disk is reported, not only ``budget``'s: a report rebuilt by a screen (seed 0)
    or by ``--report-only`` still shows the finalists' seeds."""
    records = store.records()
    found = sorted({int(r["seed"]) for r in records.values() if "seed" in r} - set(budget.seeds))
    every_seed = dataclasses.replace(budget, seeds=(*budget.seeds, *found))
    summary = summarise(table, records, every_seed)
    metric = budget.metric
    differences = comparisons(summary, claims, metric)
    payload: dict[str, Any] = {
        "machine": machine(),
        "headline": paired_headline(about["question"], summary, differences, metric),
        **about,
        "budget": {k: v for k, v in dataclasses.asdict(budget).items()},
        "seeds_done": {m.name: summary.get(m.name, {}).get("seeds_done", []) for m in table},
        "paired_differences": differences,
        "discriminating": discriminates(differences),
        "methods": summary,
        "records": f"{name}/ (one JSON per run)",
        "units_finished": len(records),
    }
    path = out / f"{name}.json"
    write_atomic(path, json.dumps(payload, indent=2) + "\n")
    if any(metric in entry for entry in summary.values()):
        plot(summary, table, out / f"{name}.png", title, metric)
    return path


def main(
    argv: Sequence[str] | None,
    doc: str | None,
    name: str,
    budgets: tuple[Budget, Budget],
    table: Callable[[bool], list[Method]],
    experiment: ExperimentFactory,
    claims: Sequence[Claim],
    about: dict[str, Any],
    title: str,
) -> dict[str, Any]:
    """Parse ``argv``, run (or continue) the units, rebuild the report; the report's content.

    ``budgets`` is ``(full, quick)``; ``table(quick)`` lists the methods in schedule order;
    ``experiment(budget, progress)`` builds the experiment (loads the model and data).
    """
    args = parser(doc).parse_args(argv)
    prepare(args.threads)
    budget = budgets[1] if args.quick else budgets[0]
    if args.seeds:
        budget = dataclasses.replace(budget, seeds=tuple(args.seeds))
    name = name + ("_quick" if args.quick else "")
    store = RecordStore(args.out / name)
    methods = table(args.quick)
    known = {m.name for m in methods}
    if args.only:
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise SystemExit(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
        methods = [m for m in methods if m.name in args.only]
    every = table(args.quick)

    def report() -> Path:
        return write_report(args.out, name, budget, every, store, claims, about, title)

    if not args.report_only:
        if store.records() and not (args.resume or args.quick):
            raise SystemExit(f"{store.root} holds records of an earlier run: pass --resume")
        if args.quick and not args.resume:
            for path in store.root.glob("*.json"):
                path.unlink()
        exp = experiment(budget, args.progress)
        try:
            work(exp, methods, store, report)
        except Exception:
            traceback.print_exc()
            raise
    path = report()
    log(f"wrote {path}")
    return dict(json.loads(path.read_text()))
