"""Scheduler: one per backend. Priority then FIFO, a bounded queue, latest-frame-wins streams.

Sans-I/O: it decides what goes next; the caller sends. A request is *queued* here until
the backend has a free slot (``max_in_flight``), then *in flight* until its answer. Batch
work (priority > ``INTERACTIVE_MAX``) only fills the window; interactive work may go past
it (up to twice the window), so it never waits behind a queue of batch items.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model_backends.base.errors import OverloadedError

INTERACTIVE_MAX = 4


@dataclass(order=True, slots=True)
class Job:
    """One request for one backend, as the hub tracks it."""

    priority: int
    seq: int
    hub_id: str = field(compare=False)
    frame: bytes = field(compare=False, repr=False)
    stream_id: str | None = field(compare=False, default=None)
    enqueued_at: float = field(compare=False, default_factory=time.perf_counter)
    owner: Any = field(compare=False, default=None, repr=False)
    dispatched_at: float | None = field(compare=False, default=None)
    removed: bool = field(compare=False, default=False)


class Scheduler:
    """Orders a backend's waiting requests and limits how many are in flight."""

    def __init__(
        self,
        name: str,
        max_queue: int,
        max_in_flight: int,
        clock: Callable[[], float] = time.perf_counter,
        stream_backlog: int | None = None,
        latest_frame_wins: bool = True,
    ) -> None:
        self.name = name
        #: False: frames of a stream are queued like any request, none is superseded.
        self.latest_frame_wins = latest_frame_wins
        #: At most this many stream frames wait (across all streams): past it the oldest waiting
        #: frame is superseded, so an answer's age stays flat however many cameras send.
        self.stream_backlog = stream_backlog or max(2, max_in_flight)
        self.max_queue = max_queue
        self.max_in_flight = max_in_flight
        #: Frames of one stream in flight at once: what the backend really runs at once (its
        #: pong says), so a newer frame waits here, where it can supersede, not in the backend.
        self.stream_in_flight = 1
        self._stream_counts: dict[str, int] = {}
        #: (priority, seq, job): tuples compare in C; the Job's own ordering would call Python.
        self._heap: list[tuple[int, int, Job]] = []
        self._queued: dict[str, Job] = {}
        self._by_stream: dict[str, Job] = {}
        self._in_flight: dict[str, Job] = {}
        self._seq = itertools.count()
        self._clock = clock
        self.superseded_total = 0
        self.rejected_total = 0

    # ---------------------------------------------------------------- queries
    @property
    def queued(self) -> int:
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def waiting(self) -> list[Job]:
        """The queued jobs (not yet sent), in no particular order."""
        return list(self._queued.values())

    def queued_by_priority(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for job in self._queued.values():
            counts[job.priority] = counts.get(job.priority, 0) + 1
        return counts

    # ---------------------------------------------------------------- changes
    def submit(
        self, hub_id: str, frame: bytes, priority: int, stream_id: str | None = None, owner: Any = None
    ) -> list[Job]:
        """Queue a request. Returns the jobs it supersedes (older frames of the same stream).

        Raises ``OverloadedError`` when the queue is full (after superseding, which frees room).
        """
        superseded: list[Job] = []
        if stream_id is not None and self.latest_frame_wins:
            old = self._by_stream.pop(stream_id, None)
            if old is None and len(self._by_stream) >= self.stream_backlog:
                old = self._by_stream.pop(next(iter(self._by_stream)))  # the oldest waiting frame
            if old is not None:
                self._drop_queued(old)
                superseded.append(old)
                self.superseded_total += 1
        if len(self._queued) >= self.max_queue:
            self.rejected_total += 1
            raise OverloadedError(
                f"backend {self.name!r} has {len(self._queued)} requests waiting (max_queue {self.max_queue})",
                retry_after=0.5,
            )
        job = Job(priority, next(self._seq), hub_id, frame, stream_id, self._clock(), owner)
        heapq.heappush(self._heap, (priority, job.seq, job))
        self._queued[hub_id] = job
        if stream_id is not None and self.latest_frame_wins:
            self._by_stream[stream_id] = job
        return superseded

    def next_ready(self) -> Job | None:
        """The next job to send now, moved to in-flight; None if nothing may go yet."""
        held: list[Job] = []  # frames of streams that have their fill in flight: they wait
        try:
            while self._heap:
                job = self._heap[0][2]
                if job.removed:
                    heapq.heappop(self._heap)
                    continue
                limit = self.max_in_flight * 2 if job.priority <= INTERACTIVE_MAX else self.max_in_flight
                if len(self._in_flight) >= limit:
                    return None
                heapq.heappop(self._heap)
                if job.stream_id is not None and self._stream_full(job.stream_id):
                    held.append(job)
                    continue
                self._dispatch(job)
                return job
            return None
        finally:
            for job in held:
                heapq.heappush(self._heap, (job.priority, job.seq, job))

    def _stream_full(self, stream_id: str) -> bool:
        """Latest-frame-wins streams get at most ``stream_in_flight`` frames in flight."""
        return self.latest_frame_wins and self._stream_counts.get(stream_id, 0) >= self.stream_in_flight

    def _dispatch(self, job: Job) -> None:
        self._queued.pop(job.hub_id, None)
        if job.stream_id is not None:
            if self._by_stream.get(job.stream_id) is job:
                del self._by_stream[job.stream_id]
            self._stream_counts[job.stream_id] = self._stream_counts.get(job.stream_id, 0) + 1
        job.dispatched_at = self._clock()
        self._in_flight[job.hub_id] = job

    def finish(self, hub_id: str) -> Job | None:
        """Forget a job, queued or in flight (answered, timed out or cancelled)."""
        job = self._in_flight.pop(hub_id, None)
        if job is not None:
            if job.stream_id is not None:
                left = self._stream_counts.pop(job.stream_id, 1) - 1
                if left > 0:
                    self._stream_counts[job.stream_id] = left
            return job
        job = self._queued.get(hub_id)
        if job is not None:
            self._drop_queued(job)
        return job

    def drain(self) -> list[Job]:
        """Remove and return every job (the backend went away)."""
        jobs = [*self._in_flight.values(), *self._queued.values()]
        self._heap.clear()
        self._queued.clear()
        self._by_stream.clear()
        self._in_flight.clear()
        self._stream_counts.clear()
        return jobs

    def _drop_queued(self, job: Job) -> None:
        job.removed = True
        self._queued.pop(job.hub_id, None)
        if job.stream_id is not None and self._by_stream.get(job.stream_id) is job:
            del self._by_stream[job.stream_id]
