"""A local Hugging Face mirror for tests: serves one folder as a model repository, as the Hub would.

It speaks what huggingface_hub's ``snapshot_download`` uses: model info at a revision
(``/api/models/{repo}/revision/{rev}``), the file tree (``/api/models/{repo}/tree/{rev}``), a
``HEAD`` per file with ``X-Repo-Commit``, ``ETag`` and size, and ``GET`` with ``Range``. Files are
sent in small slices (``--slice-delay`` between them) so a watcher sees progress; the first full
``GET`` of the file named by ``--cut`` stops half-way and drops the connection. ``GET /_log`` lists
the requests it saw (method, path, Range).

Run: ``python -m tests.support.hf_mirror --port N --repo owner/name --folder DIR [--cut FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, _spawn, free_port, wait_for_port

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SLICE = 256 * 1024


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id


class Mirror:
    def __init__(self, repo: str, folder: Path, cut: str | None, slice_delay: float) -> None:
        self.repo = repo
        self.files = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        self.cut = cut
        self.slice_delay = slice_delay
        self.log: list[dict[str, Any]] = []

    def _check_repo(self, request: web.Request) -> None:
        if f"{request.match_info['owner']}/{request.match_info['name']}" != self.repo:
            raise web.HTTPNotFound(text='{"error": "Repository not found"}', headers={"X-Error-Code": "RepoNotFound"})

    async def info(self, request: web.Request) -> web.Response:
        self._record(request)
        self._check_repo(request)
        siblings = [{"rfilename": name, "size": len(data)} for name, data in self.files.items()]
        return web.json_response({"id": self.repo, "modelId": self.repo, "sha": COMMIT, "siblings": siblings})

    async def tree(self, request: web.Request) -> web.Response:
        self._record(request)
        self._check_repo(request)
        entries = [
            {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
            for name, data in self.files.items()
        ]
        return web.json_response(entries)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        self._check_repo(request)
        data = self.files.get(request.match_info["path"])
        if data is None:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{git_blob_id(data)}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        start = _range_start(request.headers.get("Range"))
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        response = web.StreamResponse(status=status, headers={**headers, "Content-Length": str(len(body))})
        await response.prepare(request)
        cut_at = len(body) // 2 if self._cutting(request.match_info["path"], start) else None
        for offset in range(0, len(body), SLICE):
            if cut_at is not None and offset >= cut_at:
                assert request.transport is not None
                request.transport.abort()  # the connection drops half-way through the file
                return response
            await response.write(body[offset : offset + SLICE])
            await asyncio.sleep(self.slice_delay)
        await response.write_eof()
        return response

    def _cutting(self, path: str, start: int) -> bool:
        if path != self.cut or start:
            return False
        self.cut = None  # only the first transfer is cut
        return True

    def _record(self, request: web.Request) -> None:
        self.log.append({"method": request.method, "path": request.path, "range": request.headers.get("Range")})

    async def show_log(self, request: web.Request) -> web.Response:
        return web.json_response(self.log)


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    return int(header[6:].split("-", 1)[0] or 0)


@contextmanager
def hf_mirror(
    log_dir: Path, repo: str, folder: Path, cut: str | None = None, slice_delay: float = 0.02
) -> Iterator[RunningProcess]:
    """Run the mirror as its own process; its ``.http`` is the endpoint to give huggingface_hub."""
    port = free_port()
    cmd = [str(HUB_PYTHON), "-m", "tests.support.hf_mirror", "--port", str(port), "--repo", repo]
    cmd += ["--folder", str(folder), "--slice-delay", str(slice_delay)]
    if cut:
        cmd += ["--cut", cut]
    proc = _spawn(cmd, REPO, log_dir / f"hf-mirror-{port}.log", None)
    running = RunningProcess(proc, port, log_dir / f"hf-mirror-{port}.log")
    try:
        wait_for_port(port, 30, proc)
        yield running
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--cut", default=None)
    parser.add_argument("--slice-delay", type=float, default=0.02)
    args = parser.parse_args()
    mirror = Mirror(args.repo, args.folder, args.cut, args.slice_delay)
    app = web.Application()
    app.router.add_get("/_log", mirror.show_log)
    app.router.add_get("/api/models/{owner}/{name}/revision/{revision}", mirror.info)
    app.router.add_get("/api/models/{owner}/{name}/tree/{revision}", mirror.tree)
    app.router.add_route("HEAD", "/{owner}/{name}/resolve/{revision}/{path:.+}", mirror.resolve)
    app.router.add_get("/{owner}/{name}/resolve/{revision}/{path:.+}", mirror.resolve, allow_head=False)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
