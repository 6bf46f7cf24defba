"""ProviderSwitch: an external provider unloads the local model it replaces; coming back reloads it once."""

from __future__ import annotations

import asyncio
from typing import Any

from main_backend.gateway.switching import ProviderSwitch
from model_backends.base.errors import BackendUnavailableError


class FakeHub:
    """Records model_control calls; a load or unload takes a little while, like a real one."""

    def __init__(self, loaded: bool = True) -> None:
        self.loaded = {"vlm": loaded}
        self.calls: list[tuple[str, str, str]] = []
        self.fail_with: Exception | None = None

    async def model_control(self, name: str, action: str, reason: str = "admin") -> dict[str, Any]:
        self.calls.append((name, action, reason))
        await asyncio.sleep(0.01)
        if self.fail_with is not None:
            raise self.fail_with
        self.loaded[name] = action == "load"
        return {"action": action, "loaded": self.loaded[name]}

    def switch(self) -> ProviderSwitch:
        return ProviderSwitch(self.model_control, lambda name: self.loaded.get(name, False))


async def test_switch_unloads_the_replaced_backend_once_for_many_requests() -> None:
    hub = FakeHub()
    switch = hub.switch()
    await asyncio.gather(*(switch.use_external("remote", "vlm") for _ in range(10)))
    assert hub.calls == [("vlm", "unload", "gateway switched to remote")]
    assert switch.displaced == {"vlm": "remote"}


async def test_switch_reloads_once_when_many_local_requests_arrive_together() -> None:
    hub = FakeHub()
    switch = hub.switch()
    await switch.use_external("remote", "vlm")
    await asyncio.gather(*(switch.use_local("vlm") for _ in range(10)))
    assert [c[1] for c in hub.calls] == ["unload", "load"]
    assert hub.calls[1][2] == "gateway switched back from remote"
    assert switch.displaced == {}
    await switch.use_local("vlm")
    assert len(hub.calls) == 2


async def test_switch_leaves_alone_providers_that_replace_nothing_and_models_not_loaded() -> None:
    hub = FakeHub(loaded=False)
    switch = hub.switch()
    await switch.use_external("remote", None)
    await switch.use_external("remote", "vlm")
    await switch.use_local("vlm")
    assert hub.calls == []


async def test_switch_does_not_reload_a_model_someone_else_loaded_meanwhile() -> None:
    hub = FakeHub()
    switch = hub.switch()
    await switch.use_external("remote", "vlm")
    hub.loaded["vlm"] = True  # a WebSocket client's request loaded it
    await switch.use_local("vlm")
    assert [c[1] for c in hub.calls] == ["unload"]
    assert switch.displaced == {}


async def test_switch_failures_do_not_block_requests_and_are_retried() -> None:
    hub = FakeHub()
    switch = hub.switch()
    hub.fail_with = BackendUnavailableError("vlm is not connected")
    await switch.use_external("remote", "vlm")
    assert switch.displaced == {}
    hub.fail_with = None
    await switch.use_external("remote", "vlm")
    hub.fail_with = BackendUnavailableError("vlm is not connected")
    await switch.use_local("vlm")
    assert switch.displaced == {"vlm": "remote"}
    hub.fail_with = None
    await switch.use_local("vlm")
    assert switch.displaced == {}
    assert [c[1] for c in hub.calls] == ["unload", "unload", "load", "load"]


async def test_switching_back_and_forth_within_the_hold_does_not_unload_every_time() -> None:
    hub = FakeHub()
    now = [0.0]
    switch = ProviderSwitch(hub.model_control, lambda n: hub.loaded.get(n, False), hold_s=60.0, clock=lambda: now[0])
    for _ in range(5):  # remote, local, remote, local, ... within a minute
        await switch.use_external("remote", "vlm")
        await switch.use_local("vlm")
        now[0] += 5.0
    assert [c[1] for c in hub.calls] == ["unload", "load"]
    now[0] += 60.0  # the hold has passed: the next provider call frees the memory again
    await switch.use_external("remote", "vlm")
    assert [c[1] for c in hub.calls] == ["unload", "load", "unload"]


async def test_a_provider_request_does_not_wait_for_a_busy_local_model_to_unload() -> None:
    hub = FakeHub()
    busy = {"vlm": True}
    switch = ProviderSwitch(hub.model_control, lambda n: hub.loaded.get(n, False), busy=lambda n: busy[n])
    await asyncio.wait_for(switch.use_external("remote", "vlm"), 2.0)  # returns although vlm stays busy
    assert hub.calls == []
    busy["vlm"] = False  # its generations are done: the deferred unload runs
    for _ in range(200):
        if switch.displaced:
            break
        await asyncio.sleep(0.05)
    assert [c[1] for c in hub.calls] == ["unload"]
    assert switch.displaced == {"vlm": "remote"}
    await switch.close()


async def test_a_deferred_unload_is_dropped_when_the_local_model_is_wanted_again() -> None:
    hub = FakeHub()
    busy = {"vlm": True}
    switch = ProviderSwitch(hub.model_control, lambda n: hub.loaded.get(n, False), busy=lambda n: busy[n])
    await switch.use_external("remote", "vlm")
    await switch.use_local("vlm")
    busy["vlm"] = False
    await asyncio.sleep(0.6)
    assert hub.calls == []
    assert hub.loaded["vlm"] is True


async def test_a_model_a_capability_uses_is_not_unloaded_by_a_provider_call() -> None:
    hub = FakeHub()
    switch = ProviderSwitch(hub.model_control, lambda n: hub.loaded.get(n, False), in_use=lambda n: n == "vlm")
    await switch.use_external("remote", "vlm")
    assert hub.calls == []
    assert await switch.release("vlm", "remote", "capability text bound to remote") == "unloaded"
    assert hub.calls == [("vlm", "unload", "capability text bound to remote")]
