"""Start and stop backends through the running hub's admin API, and wait for them to settle."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from main_backend.launcher.hub_client import HubClient, HubRequestError, HubUnreachable
from main_backend.terminal import Style

#: States a backend settles in after ``start`` / ``stop``.
SETTLED = {"start": ("ready", "failed"), "stop": ("stopped", "failed")}
#: States in which a backend does not run.
NOT_RUNNING = frozenset({"stopped", "failed", "down"})


def add_hub_options(parser: argparse.ArgumentParser) -> None:
    """The flags every launcher command shares."""
    parser.add_argument(
        "--hub", default=None, help="the running hub's URL (default: hub.host/port of the config, or $HUB_URL)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


@dataclass
class ActionResult:
    backend: str
    action: str
    ok: bool
    error: str | None = None
    state: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def perform(client: HubClient, names: list[str], action: str, timeout: float = 60.0) -> list[ActionResult]:
    """POST ``/api/backends/{name}/{action}`` for each name; a failure does not stop the others."""
    results = []
    for name in names:
        try:
            client.post(f"/api/backends/{name}/{action}", timeout=timeout)
            results.append(ActionResult(name, action, ok=True))
        except (HubRequestError, HubUnreachable) as exc:
            results.append(ActionResult(name, action, ok=False, error=str(exc)))
    return results


def wait_settled(client: HubClient, results: list[ActionResult], timeout: float, poll_s: float = 0.2) -> None:
    """Poll each backend that the hub accepted until it is ready/stopped (or failed), up to ``timeout``."""
    deadline = time.monotonic() + timeout
    waiting = [r for r in results if r.ok]
    while waiting:
        for result in list(waiting):
            try:
                result.state = str(client.get(f"/api/backends/{result.backend}")["state"])
            except (HubRequestError, HubUnreachable) as exc:
                result.state, result.error = "unknown", str(exc)
            if result.state in SETTLED[result.action] or result.state == "unknown":
                waiting.remove(result)
                if result.state in {"failed", "unknown"}:
                    result.ok = False
        if not waiting:
            return
        if time.monotonic() >= deadline:
            for result in waiting:
                result.ok = False
                result.error = f"still {result.state} after {timeout:g}s"
            return
        time.sleep(poll_s)


def describe(result: ActionResult, style: Style) -> str:
    """One line for a result: ``echo: started`` or ``echo: start failed: why``."""
    if result.state == "dry run":
        return f"{result.backend}: would {result.action}"
    if not result.ok:
        return f"{result.backend}: " + style.paint(f"{result.action} failed: {result.error}", "red")
    done = "started" if result.action == "start" else "stopped"
    settled = result.state in (None, "ready", "stopped")
    return f"{result.backend}: " + style.paint(done if settled else f"{done} ({result.state})", "green")
