"""``python -m fastmix`` = the ``fastmix`` command."""

from fastmix.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
