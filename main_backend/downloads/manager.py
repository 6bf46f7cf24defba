"""DownloadManager: model downloads started over HTTP, run off the event loop, watched as progress.

Each download runs ``fetch_snapshot`` in a worker thread; a task on the loop samples its
progress every ``PROGRESS_EVERY_S``, wakes the clients watching it, and records it in the state
database (so ``GET /api/downloads`` still lists it after a restart; one that was running when
the hub stopped is shown ``interrupted``, and starting it again fetches only the files it lacks).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from main_backend.downloads.fetch import DownloadError, fetch_snapshot
from main_backend.downloads.progress import DownloadCancelled, DownloadProgress
from main_backend.statedb.database import DownloadRecord, StateDatabase
from main_backend.statedb.store import StateStore
from model_backends.base.errors import BadRequestError

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.25
#: How long a cancelled download's thread gets to notice (at its next progress update) and stop.
CANCEL_WAIT_S = 15.0
#: Persist progress at most this often (the final state is always written).
SAVE_EVERY_S = 2.0
FINAL_STATES = frozenset({"done", "failed", "interrupted"})


class DownloadManager:
    """Starts downloads, keeps their records, and lets watchers wait for the next change."""

    def __init__(self, store: StateStore, cache_dir: Path | None, endpoint: str | None) -> None:
        self._store = store
        self._cache_dir = cache_dir
        self._endpoint = endpoint
        self.records: dict[str, DownloadRecord] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Condition()

    async def restore(self) -> None:
        """Load the records of earlier runs; what was running then is ``interrupted`` now."""
        for record in await self._store.run(StateDatabase.downloads):
            if record.state not in FINAL_STATES:
                record.state = "interrupted"
                record.error = "the hub stopped during the download; start it again to fetch what is missing"
                await self._store.run(StateDatabase.save_download, record)
            self.records[record.id] = record

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def list(self) -> list[dict[str, Any]]:
        return [r.as_json() for r in self.records.values()]

    def get(self, download_id: str) -> DownloadRecord:
        try:
            return self.records[download_id]
        except KeyError:
            raise BadRequestError(f"unknown download {download_id!r}") from None

    async def start(self, repo_id: str, revision: str | None = None, endpoint: str | None = None) -> DownloadRecord:
        """Start downloading ``repo_id`` (the running one if the same download is already under way)."""
        if repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
            raise BadRequestError(f"repo_id must look like 'owner/name', got {repo_id!r}")
        endpoint = endpoint or self._endpoint
        for record in self.records.values():
            same = (record.repo_id, record.revision, record.endpoint) == (repo_id, revision, endpoint)
            if same and record.state == "running":
                return record
        record = DownloadRecord(secrets.token_hex(6), repo_id, revision, endpoint, "running")
        await self._store.run(StateDatabase.save_download, record)
        self.records[record.id] = record
        self._tasks[record.id] = asyncio.create_task(self._run(record), name=f"download-{record.id}")
        logger.info("download %s: %s@%s from %s", record.id, repo_id, revision or "main", endpoint or "the Hub")
        return record

    async def _run(self, record: DownloadRecord) -> None:
        progress = DownloadProgress()
        work = asyncio.create_task(
            asyncio.to_thread(
                fetch_snapshot,
                record.repo_id,
                revision=record.revision,
                endpoint=record.endpoint,
                cache_dir=self._cache_dir,
                tqdm_class=progress.bar_class(),
            )
        )
        saved_at = asyncio.get_running_loop().time()
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=PROGRESS_EVERY_S)
                self._take(record, progress)
                await self._notify()
                now = asyncio.get_running_loop().time()
                if now - saved_at >= SAVE_EVERY_S:
                    await self._store.run(StateDatabase.save_download, record)
                    saved_at = now
            record.path = str(work.result())
            record.state = "done"
            logger.info("download %s: %s complete in %s", record.id, record.repo_id, record.path)
        except asyncio.CancelledError:
            progress.cancel()  # the thread stops at its next progress update; finished files stay
            await asyncio.wait({work}, timeout=CANCEL_WAIT_S)
            raise
        except DownloadError as exc:
            record.state, record.error = "failed", str(exc)
            logger.warning("download %s: %s failed: %s", record.id, record.repo_id, exc)
        except DownloadCancelled:
            pass  # stays "running" until the finally below marks it interrupted
        except Exception as exc:  # an unexpected failure still ends the record, and is logged in full
            record.state, record.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.exception("download %s: %s failed", record.id, record.repo_id)
        finally:
            self._take(record, progress)
            if record.state == "running":  # cancelled: the hub is stopping
                record.state = "interrupted"
                record.error = "the hub stopped during the download; start it again to fetch what is missing"
            await asyncio.shield(self._store.run(StateDatabase.save_download, record))
            self._tasks.pop(record.id, None)
            await self._notify()

    def _take(self, record: DownloadRecord, progress: DownloadProgress) -> None:
        snap = progress.snapshot()
        record.bytes_done = snap["bytes_done"] or 0
        record.bytes_total = snap["bytes_total"]
        record.files_done = snap["files_done"] or 0
        record.files_total = snap["files_total"]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def watch(self, download_id: str, timeout: float = 15.0) -> AsyncIterator[dict[str, Any]]:
        """The record now, then after each change, until it ends; a quiet ``timeout`` repeats the last."""
        record = self.get(download_id)
        while True:
            yield record.as_json()
            if record.state in FINAL_STATES:
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass
