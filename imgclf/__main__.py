"""``python -m imgclf``: the same command line as the ``imgclf`` script."""

from .cli import main

# Guarded so that importing this module (pytest's doctest collection, Sphinx
# autodoc) does not run the command line.
if __name__ == "__main__":
    raise SystemExit(main())
