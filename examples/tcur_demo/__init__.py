"""The tcur demo (`make demo`): CUR on real data, then CUR-based fine-tuning of a real model.

:mod:`tcur_demo.decomposition` compares CUR and t-CUR with truncated SVD and t-SVD on real
matrices and tensors; :mod:`tcur_demo.finetune` fine-tunes all-MiniLM-L6-v2 (with the
mean-pooling head of :mod:`tcur_demo.classifier`) using tCURLoRA and PEFT LoRA. Both need the
``examples`` extra; :mod:`tcur_demo.requirements` checks for it before any work starts, and
:mod:`tcur_demo.report` prints the tables and :mod:`tcur_demo.datasets` finds the offline model and
data packages. This package lives in ``examples/`` (not in the installed ``tcur``): run it with
``PYTHONPATH=examples python -m tcur_demo`` from the repository root.
"""
