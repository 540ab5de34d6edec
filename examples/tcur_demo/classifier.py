"""A sentence classifier the way all-MiniLM-L6-v2 embeds sentences: a linear layer on mean pooling.

all-MiniLM-L6-v2 is a sentence-transformers model; its ``1_Pooling/config.json`` sets
``pooling_mode_mean_tokens``, so its sentence embedding is the mean of the last hidden states over
the non-padding tokens (not BERT's ``[CLS]`` pooler, which this checkpoint never trained for).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MeanPoolClassifier(nn.Module):
    """``classifier(mean of encoder(input_ids).last_hidden_state over unmasked tokens)``.

    Parameters
    ----------
    encoder : torch.nn.Module
        A transformers encoder (``model(input_ids=..., attention_mask=...)`` returning
        ``.last_hidden_state``) with ``config.hidden_size``.
    n_classes : int
        Outputs of the linear ``classifier``.

    Examples
    --------
    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=16)
    >>> model = MeanPoolClassifier(BertModel(config, add_pooling_layer=False), n_classes=3)
    >>> ids, mask = torch.tensor([[5, 6, 0]]), torch.tensor([[1, 1, 0]])
    >>> model(input_ids=ids, attention_mask=mask).shape
    torch.Size([1, 3])
    """

    def __init__(self, encoder: nn.Module, n_classes: int = 2) -> None:
        super().__init__()
        self.encoder = encoder
        config: Any = encoder.config  # a transformers PretrainedConfig
        self.classifier = nn.Linear(int(config.hidden_size), n_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over the tokens where ``attention_mask`` is 1."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class logits of shape ``(batch, n_classes)``."""
        return self.classifier(self.embed(input_ids, attention_mask))
