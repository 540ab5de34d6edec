"""The ``tcur demo`` command: CUR on real data, then CUR-based fine-tuning of a real model.

:mod:`tcur.demo.decomposition` compares CUR and t-CUR with truncated SVD and t-SVD on real
matrices and tensors; :mod:`tcur.demo.finetune` fine-tunes all-MiniLM-L6-v2 (with the
mean-pooling head of :mod:`tcur.demo.classifier`) using tCURLoRA and PEFT LoRA. Both need the
``examples`` extra; :mod:`tcur.demo.requirements` checks for it before any work starts, and
:mod:`tcur.demo.report` prints the tables.
"""
