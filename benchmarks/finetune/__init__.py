"""The fine-tuning experiments: methods, protocol, records, report, data and entry points.

Run from the repository root with ``benchmarks`` and ``examples`` on ``PYTHONPATH`` (the Makefile's
``make finetune`` and ``make finetune-test`` set exactly that, nothing else does)::

    PYTHONPATH=benchmarks:examples python -m finetune.minilm_rt --quick

Modules
-------
``methods``      the methods compared (builders, configurations, first learning-rate grids)
``protocol``     the budget, the learning-rate search, the schedule and one training run
``records``      one JSON record per finished unit of work, claims for parallel workers
``report``       per-method summaries, headline tables, plots
``data``         data sets and model files from PyPI packages (no network)

Entry points (each ``python -m finetune.<name> [--quick] [--resume]``)
-----------------------------------------------------------------------
``minilm_rt``        the committed frontier, MiniLM on Rotten Tomatoes (``make bench`` runs it)
``step_size``        size of Adam's first tCURLoRA step across rank, n3 and layer kind (idem)
"""
