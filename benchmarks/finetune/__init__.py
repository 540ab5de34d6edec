"""The fine-tuning experiments: methods, protocol, records, report, data and entry points.

Run from the repository root with ``benchmarks`` and ``examples`` on ``PYTHONPATH`` (the Makefile's
``make finetune`` and ``make finetune-test`` set exactly that, nothing else does)::

    PYTHONPATH=benchmarks:examples python -m finetune.minilm_rt --quick

Modules
-------
``methods``      the methods compared (builders, configurations, first learning-rate grids)
``variants``     tCURLoRA variants of issue 21 (bases, transform along the layer axis)
``protocol``     the budget, the learning-rate search, the schedule and one training run
``records``      one JSON record per finished unit of work, claims for parallel workers
``report``       per-method summaries, headline tables, paired differences with 95% CIs, plots
``runner``       the command line and work loop of the research entry points
``data``         data sets and model files from PyPI packages (no network)

Entry points (each ``python -m finetune.<name> [--quick] [--resume]``)
-----------------------------------------------------------------------
``minilm_rt``        the committed frontier, MiniLM on Rotten Tomatoes (``make bench`` runs it)
``step_size``        size of Adam's first tCURLoRA step across rank, n3 and layer kind (idem)
``discriminating``   the harder classifier benchmark and variant screen of issue 21 (hours;
                     not in ``make bench``: ``make finetune FT=discriminating FT_ARGS=...``)
``discriminating_imdb``  the next candidate setting: IMDB reviews, 64 tokens, one epoch (idem)
``causal_lm``        SmolLM2-135M causal-LM fine-tuning on IMDB text, perplexity (hours; idem)
"""
