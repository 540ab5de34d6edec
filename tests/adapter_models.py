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


class AttentionNet(nn.Module):
    """``nn.MultiheadAttention`` (``attn``) and a ``head``; input ``(batch, tokens, d)``."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x, x, x, need_weights=False)[0])


class EncoderNet(nn.Module):
    """Two ``nn.TransformerEncoderLayer`` in an ``nn.TransformerEncoder`` (``enc``), batch first."""

    def __init__(self, d: int = 16, nested: bool = False) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=nested)

    def forward(
        self, x: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        out: torch.Tensor = self.enc(x, src_key_padding_mask=src_key_padding_mask)
        return out


def attention_net(seed: int = 0) -> AttentionNet:
    """A seeded :class:`AttentionNet` in eval mode."""
    torch.manual_seed(seed)
    return AttentionNet().eval()


def encoder_net(seed: int = 0, nested: bool = False) -> EncoderNet:
    """A seeded :class:`EncoderNet` in eval mode (PyTorch's fused inference path applies)."""
    torch.manual_seed(seed)
    return EncoderNet(nested=nested).eval()
