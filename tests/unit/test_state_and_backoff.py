"""Backend state transitions and the back-off generator."""

from __future__ import annotations

import itertools
import random

from main_backend.backoff import backoff
from main_backend.sessions import TokenBucket
from main_backend.state import BackendState, Event, StateMachine


def test_a_backend_goes_starting_ready_degraded_down_and_back() -> None:
    changes: list[tuple[str, str]] = []
    sm = StateMachine("m", on_change=lambda old, new, ev: changes.append((old.value, new.value)))
    for event in (
        Event.SPAWN,
        Event.CONNECTED,
        Event.PING_FAILED,
        Event.PING_OK,
        Event.DISCONNECTED,
        Event.SPAWN,
        Event.CONNECTED,
    ):
        assert sm.fire(event)
    assert sm.state is BackendState.READY
    assert changes[:4] == [("stopped", "starting"), ("starting", "ready"), ("ready", "degraded"), ("degraded", "ready")]


def test_transitions_not_in_the_table_are_ignored() -> None:
    sm = StateMachine("m")
    assert not sm.fire(Event.LOAD_DONE)
    assert sm.state is BackendState.STOPPED


def test_give_up_marks_failed_and_a_spawn_revives() -> None:
    sm = StateMachine("m", BackendState.DOWN)
    sm.fire(Event.GIVE_UP)
    assert sm.state is BackendState.FAILED
    sm.fire(Event.SPAWN)
    assert sm.state is BackendState.STARTING


def test_a_failed_load_leaves_the_backend_degraded_until_a_load_works() -> None:
    sm = StateMachine("vlm", BackendState.READY)
    for event in (Event.LOAD_STARTED, Event.LOAD_DONE, Event.LOAD_FAILED):  # the hub fires LOAD_DONE in a finally
        sm.fire(event)
    assert sm.state is BackendState.DEGRADED
    assert sm.fire(Event.LOAD_STARTED) and sm.state is BackendState.LOADING
    sm.fire(Event.LOAD_DONE)
    assert sm.state is BackendState.READY


def test_a_load_failure_backs_off_doubling_up_to_the_maximum() -> None:
    from main_backend.backend_runtime import LOAD_RETRY_MAX_S, BackendRuntime

    rt = BackendRuntime.__new__(BackendRuntime)  # only the load-failure fields are used here
    rt.load_failure, rt.last_error = None, None
    waits = [rt.note_load_failure("no weights", now=100.0).retry_in(100.0) for _ in range(8)]
    assert waits[:3] == [10.0, 20.0, 40.0]
    assert waits[-1] == LOAD_RETRY_MAX_S
    assert rt.last_error == "no weights" and rt.load_failure is not None and rt.load_failure.attempts == 8


def test_backoff_grows_by_the_factor_up_to_the_cap_with_jitter() -> None:
    delays = list(itertools.islice(backoff(1.0, 2.0, 8.0, jitter=0.0), 6))
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    jittered = list(itertools.islice(backoff(1.0, 2.0, 8.0, jitter=0.25, rng=random.Random(1)), 50))
    assert all(0.75 <= d <= 10.0 for d in jittered)
    assert len(set(jittered)) > 10


def test_token_bucket_limits_the_rate_and_says_when_to_retry() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0])
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    wait = bucket.take()
    assert 0.09 < wait <= 0.1
    now[0] += 0.1
    assert bucket.take() == 0.0
