"""Exponential back-off with jitter, as a generator of delays (shape of websockets' backoff)."""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff(
    initial: float = 1.0,
    factor: float = 1.618,
    max_delay: float = 30.0,
    jitter: float = 0.25,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield delays: ``initial``, then x``factor`` each time, capped at ``max_delay``.

    Each delay is spread by +/- ``jitter`` (a fraction) so that many links reconnecting at
    once do not stampede a restarted backend.
    """
    rand = rng or random.Random()
    delay = initial
    while True:
        spread = delay * jitter
        yield max(0.0, delay + rand.uniform(-spread, spread))
        delay = min(delay * factor, max_delay)
