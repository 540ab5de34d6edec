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


class MLP(nn.Module):
    """PEFT's test MLP, with two equal hidden layers so that tCURLoRA groups have ``n3 = 2``.

    ``lin0`` (10 -> 20), ``lins.0``/``lins.1`` (20 -> 20), dropout and a ``head`` (20 -> 2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.lin0 = nn.Linear(10, 20)
        self.lins = nn.ModuleList(nn.Linear(20, 20) for _ in range(2))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.lin0(x))
        for layer in self.lins:
            x = torch.tanh(layer(x))
        out: torch.Tensor = self.head(self.drop(x))
        return out


def mlp(seed: int = 0) -> MLP:
    """A seeded :class:`MLP` in eval mode."""
    torch.manual_seed(seed)
    return MLP().eval()


def tiny_bert(seed: int = 0) -> nn.Module:
    """A random 2-layer BERT classifier (hidden 32, no dropout, ``classifier`` head)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout=0.0,
    )
    config.num_labels = 3
    return BertForSequenceClassification(config).eval()


def tiny_llama(seed: int = 0) -> nn.Module:
    """A random 2-layer LLaMA (hidden 32, grouped-query attention, untied ``lm_head``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        attention_dropout=0.0,
    )
    return LlamaForCausalLM(config).eval()
