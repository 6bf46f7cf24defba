"""Which replica gets a request: streams stick, lost replicas fail only their own requests."""

from __future__ import annotations

from main_backend.placement.autoscale import desired_replicas
from main_backend.placement.replica_routing import ReplicaTable
from main_backend.placement.settings import ReplicaRange


def _table(*keys: str) -> ReplicaTable:
    table = ReplicaTable()
    for key in keys:
        table.add(key)
    return table


def test_a_stream_stays_on_its_replica_while_replicas_come_and_go() -> None:
    table = _table("r1", "r2")
    first = {f"cam-{i}": table.choose(f"cam-{i}") for i in range(50)}
    table.add("r3")
    again = {s: table.choose(s) for s in first}
    assert {s: c.replica for s, c in again.items() if c} == {s: c.replica for s, c in first.items() if c}
    assert {c.replica for c in first.values() if c} == {"r1", "r2"}  # both replicas get streams


def test_streams_of_a_lost_replica_move_and_say_so_once() -> None:
    table = _table("r1", "r2")
    owners = {f"cam-{i}": table.choose(f"cam-{i}").replica for i in range(40)}  # type: ignore[union-attr]
    table.remove("r1")
    moved = {s for s, r in owners.items() if r == "r1"}
    after = {s: table.choose(s) for s in owners}
    assert all(c is not None and c.replica == "r2" for c in after.values())
    assert {s for s, c in after.items() if c and c.stream_reset} == moved
    assert not any(c.stream_reset for c in (table.choose(s) for s in owners) if c)


def test_removing_a_replica_returns_only_its_in_flight_requests() -> None:
    table = _table("r1", "r2")
    table.sent("h1", "r1")
    table.sent("h2", "r2")
    table.sent("h3", "r1")
    table.finished("h3")
    assert table.remove("r1") == ["h1"]
    assert table.owner("h2") == "r2"
    assert table.owner("h1") is None


def test_requests_without_a_stream_go_to_the_least_busy_replica() -> None:
    table = _table("r1", "r2")
    table.sent("h1", "r1")
    table.sent("h2", "r1")
    assert table.choose(None).replica == "r2"  # type: ignore[union-attr]


def test_no_replica_means_no_choice() -> None:
    assert ReplicaTable().choose("cam") is None


def test_the_stream_map_is_bounded() -> None:
    table = ReplicaTable(max_streams=10)
    table.add("r1")
    for i in range(100):
        table.choose(f"s{i}")
    assert table.stream_count("r1") == 10


def test_autoscaling_grows_at_once_and_shrinks_after_a_quiet_period() -> None:
    rng = ReplicaRange(min=1, max=4, target_in_flight=2, scale_down_after=10)
    assert desired_replicas(7, 1, rng, None, 0.0) == (4, None)
    assert desired_replicas(100, 2, rng, None, 0.0) == (4, None)
    assert desired_replicas(0, 3, rng, None, 5.0) == (3, 5.0)
    assert desired_replicas(0, 3, rng, 5.0, 10.0) == (3, 5.0)
    assert desired_replicas(0, 3, rng, 5.0, 15.0) == (2, 15.0)
    assert desired_replicas(1, 1, rng, None, 0.0) == (1, None)
