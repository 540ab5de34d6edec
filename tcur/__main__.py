"""``python -m tcur``: the ``tcur`` command line (see :mod:`tcur.cli`)."""

from tcur.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
