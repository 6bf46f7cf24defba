"""Where a backend runs: a local process (default), a remote endpoint, or replicas on a Ray cluster."""
