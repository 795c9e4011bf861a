"""Entry point for ``python -m flowyard``."""

from flowyard.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
