"""The hub's runtime state in an embedded SQLite database (``hub.state_dir``, default ``.hub/``)."""
