"""The tcur demo (``make demo``): CUR on real data, then CUR-based fine-tuning of a real model.

Step 1 (:mod:`tcur_demo.decomposition`) runs :func:`tcur.decompose` with its defaults on real
data (:mod:`tcur_demo.realdata`) against SciPy's ID-CUR and the truncated SVD or t-SVD
(:mod:`tcur_demo.baselines`). Step 2 (:mod:`tcur_demo.finetune`) fine-tunes all-MiniLM-L6-v2
(with the mean-pooling head of :mod:`tcur_demo.classifier`) with head only, tCURLoRA and PEFT
LoRA at the learning rates of the frontier (:mod:`tcur_demo.frontier`), whose 3-seed means it
prints beside its own figures, then the verdicts of the paired-seed benchmarks
(:mod:`tcur_demo.paired`: causal-LM perplexity and two harder classifiers, each marked
discriminating or not).
:mod:`tcur_demo.summary` writes every printed figure to ``summary.json`` and
:mod:`tcur_demo.figure` draws the summary figure from it;
:mod:`tcur_demo.report` formats the tables, :mod:`tcur_demo.datasets` finds the offline model and
data packages and :mod:`tcur_demo.requirements` checks for the ``examples`` extra before any work
starts. This package lives in ``examples/`` (not in the installed ``tcur``): run it with
``PYTHONPATH=examples python -m tcur_demo`` from the repository root.
"""
