"""CLI commands: each module here has ``register(subparsers, common)``; cli.py finds them all."""
