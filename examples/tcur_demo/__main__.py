"""``python -m tcur_demo``: the demo's command line (see :mod:`tcur_demo.cli`)."""

from tcur_demo.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
