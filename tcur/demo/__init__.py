"""The ``tcur demo`` command: CUR on real data, then CUR-based fine-tuning of a real model.

:mod:`tcur.demo.decomposition` compares CUR with truncated SVD on real matrices and tensors,
:mod:`tcur.demo.finetune` fine-tunes all-MiniLM-L6-v2 with tCURLoRA and with PEFT LoRA. Both need
the ``examples`` extra; :mod:`tcur.demo.requirements` checks for it before any work starts.
"""
