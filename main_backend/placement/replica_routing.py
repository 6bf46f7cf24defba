"""Which replica gets a request: sticky per stream, least in-flight otherwise (sans-I/O).

A stream's first frame picks a replica by rendezvous hashing over the replicas alive then, and
the stream stays there (its state, such as PERCLOS, lives in that replica) until the replica
goes away; then the stream is placed again and its next answer says ``stream_reset``. Requests
without a stream go to the replica with the fewest in flight. Everything here is pure: the
link that moves bytes calls it and acts on what it returns.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

#: Streams remembered; an evicted stream that comes back is hashed to the same replica anyway.
MAX_STREAMS = 65_536


@dataclass
class ReplicaLoad:
    """One live replica: its key and the hub ids it is serving now."""

    key: str
    in_flight: set[str] = field(default_factory=set)
    sent: int = 0


@dataclass(frozen=True)
class Choice:
    replica: str
    stream_reset: bool


class ReplicaTable:
    """Live replicas, the stream -> replica map, and which request is on which replica."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self._replicas: dict[str, ReplicaLoad] = {}
        self._streams: OrderedDict[str, str] = OrderedDict()
        self._moved: set[str] = set()
        self._owner: dict[str, str] = {}
        self._max_streams = max_streams
        self._turn = 0

    @property
    def live(self) -> list[str]:
        return list(self._replicas)

    def load(self, key: str) -> ReplicaLoad | None:
        return self._replicas.get(key)

    def add(self, key: str) -> None:
        """A replica is connected and may take requests."""
        self._replicas.setdefault(key, ReplicaLoad(key))

    def remove(self, key: str) -> list[str]:
        """A replica went away: returns the hub ids it had in flight (the caller fails them).

        Its streams are placed again on their next frame, and that answer says ``stream_reset``.
        """
        gone = self._replicas.pop(key, None)
        for stream, owner in self._streams.items():
            if owner == key:
                self._moved.add(stream)
        if gone is None:
            return []
        for hub_id in gone.in_flight:
            self._owner.pop(hub_id, None)
        return sorted(gone.in_flight)

    def choose(self, stream_id: str | None) -> Choice | None:
        """The replica for a new request, or None when no replica is live."""
        if not self._replicas:
            return None
        if stream_id is None:
            return Choice(self._least_loaded(), False)
        owner = self._streams.get(stream_id)
        if owner is not None and owner in self._replicas:
            self._streams.move_to_end(stream_id)
            return Choice(owner, False)
        owner = rendezvous(stream_id, self._replicas)
        reset = stream_id in self._moved
        self._moved.discard(stream_id)
        self._streams[stream_id] = owner
        if len(self._streams) > self._max_streams:
            old, _ = self._streams.popitem(last=False)
            self._moved.discard(old)
        return Choice(owner, reset)

    def sent(self, hub_id: str, key: str) -> None:
        replica = self._replicas.get(key)
        if replica is not None:
            replica.in_flight.add(hub_id)
            replica.sent += 1
            self._owner[hub_id] = key

    def owner(self, hub_id: str) -> str | None:
        return self._owner.get(hub_id)

    def finished(self, hub_id: str) -> str | None:
        """A final answer (or error) for ``hub_id`` arrived; returns the replica that served it."""
        key = self._owner.pop(hub_id, None)
        if key is not None and key in self._replicas:
            self._replicas[key].in_flight.discard(hub_id)
        return key

    def stream_count(self, key: str) -> int:
        return sum(1 for owner in self._streams.values() if owner == key)

    def _least_loaded(self) -> str:
        replicas = list(self._replicas.values())
        self._turn = (self._turn + 1) % len(replicas)
        rotated = replicas[self._turn :] + replicas[: self._turn]  # ties go round robin
        return min(rotated, key=lambda r: len(r.in_flight)).key


def rendezvous(stream_id: str, replicas: dict[str, ReplicaLoad] | list[str]) -> str:
    """Highest-random-weight hashing: only the streams of a lost replica move."""
    return max(replicas, key=lambda key: hashlib.blake2b(f"{key}\0{stream_id}".encode(), digest_size=8).digest())
