"""The health dashboard: one static page at ``GET /`` fed live by server-sent events."""
