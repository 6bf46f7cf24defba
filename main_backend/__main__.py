"""``python -m main_backend``: the hub's command line."""

from main_backend.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
