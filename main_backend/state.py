"""Every backend state transition, as one table (the h11 way): nothing else changes a state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

logger = logging.getLogger(__name__)


class BackendState(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    LOADING = "loading"
    UNLOADING = "unloading"
    DEGRADED = "degraded"
    DOWN = "down"
    STOPPING = "stopping"
    FAILED = "failed"


class Event(str, Enum):
    SPAWN = "spawn"
    CONNECTED = "connected"
    PING_OK = "ping_ok"
    PING_FAILED = "ping_failed"
    DISCONNECTED = "disconnected"
    EXITED = "exited"
    LOAD_STARTED = "load_started"
    LOAD_DONE = "load_done"
    UNLOAD_STARTED = "unload_started"
    UNLOAD_DONE = "unload_done"
    STOP = "stop"
    STOPPED = "stopped"
    GIVE_UP = "give_up"
    LOAD_FAILED = "load_failed"


S, E = BackendState, Event
_LIVE = (S.READY, S.LOADING, S.UNLOADING, S.DEGRADED)

TRANSITIONS: dict[tuple[BackendState, Event], BackendState] = {
    **{(s, E.SPAWN): S.STARTING for s in (S.STOPPED, S.DOWN, S.FAILED, S.DEGRADED, S.STARTING)},
    **{(s, E.CONNECTED): S.READY for s in (S.STARTING, S.DOWN, S.DEGRADED, S.STOPPED, S.FAILED)},
    (S.DEGRADED, E.PING_OK): S.READY,
    **{(s, E.PING_FAILED): S.DEGRADED for s in (S.READY, S.LOADING, S.UNLOADING)},
    **{(s, E.DISCONNECTED): S.DOWN for s in (*_LIVE, S.STARTING)},
    **{(s, E.EXITED): S.DOWN for s in (*_LIVE, S.STARTING)},
    (S.STOPPING, E.EXITED): S.STOPPED,
    (S.READY, E.LOAD_STARTED): S.LOADING,
    (S.LOADING, E.LOAD_DONE): S.READY,
    # A model that failed to load leaves the backend degraded (the reason in last_error) until a load works.
    **{(s, E.LOAD_FAILED): S.DEGRADED for s in (S.READY, S.LOADING)},
    (S.DEGRADED, E.LOAD_STARTED): S.LOADING,
    (S.READY, E.UNLOAD_STARTED): S.UNLOADING,
    (S.UNLOADING, E.UNLOAD_DONE): S.READY,
    **{(s, E.STOP): S.STOPPING for s in (*_LIVE, S.STARTING, S.DOWN, S.FAILED)},
    (S.STOPPING, E.STOPPED): S.STOPPED,
    **{(s, E.GIVE_UP): S.FAILED for s in (*_LIVE, S.STARTING, S.DOWN)},
}

#: States in which requests may be sent to the backend.
SERVING = frozenset({S.READY, S.LOADING, S.UNLOADING, S.DEGRADED})
#: States in which requests wait in the queue for the backend to come up.
COMING_UP = frozenset({S.STARTING})


class StateMachine:
    """A backend's state; ``fire`` applies the table and reports whether anything changed."""

    def __init__(
        self,
        name: str,
        initial: BackendState = S.STOPPED,
        on_change: Callable[[BackendState, BackendState, Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.state = initial
        self.since = clock()
        self._on_change = on_change
        self._clock = clock

    def fire(self, event: Event) -> bool:
        new = TRANSITIONS.get((self.state, event))
        if new is None:
            logger.debug("%s: %s ignored in state %s", self.name, event.value, self.state.value)
            return False
        old, self.state = self.state, new
        if new is not old:
            self.since = self._clock()
            logger.info("%s: %s -> %s (%s)", self.name, old.value, new.value, event.value)
            if self._on_change is not None:
                self._on_change(old, new, event)
        return True
