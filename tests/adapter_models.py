"""Tiny models shared by the adapter tests (built from code or configs, never downloaded)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Attention-shaped block: ``query``/``value`` (d x d) and an MLP ``up``/``down``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.query = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.up = nn.Linear(d, 2 * d)
        self.down = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.value(torch.tanh(self.query(x)))
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


class TinyEncoder(nn.Module):
    """``n_layers`` blocks and a ``classifier`` head; input ``(batch, tokens, d)``."""

    def __init__(self, d: int = 12, n_layers: int = 3, n_classes: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(d) for _ in range(n_layers))
        self.classifier = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.classifier(x.mean(dim=1))


def tiny_encoder(seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs: int) -> TinyEncoder:
    """A seeded :class:`TinyEncoder`."""
    torch.manual_seed(seed)
    return TinyEncoder(**kwargs).to(dtype)


def tiny_gpt2(seed: int = 0) -> nn.Module:
    """A random 2-layer GPT-2 (n_embd=32) from a config; weights are ``Conv1D``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        vocab_size=64,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config).eval()
