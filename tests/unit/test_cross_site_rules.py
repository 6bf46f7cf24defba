"""The Host and Origin rules without a server: which names and origins are this hub."""

from __future__ import annotations

from main_backend.cross_site import CrossSiteGuard


def test_a_loopback_hub_answers_only_to_its_own_names_and_allowed_hosts() -> None:
    guard = CrossSiteGuard("127.0.0.1", allowed_hosts=["hub.test", ".corp.example"])
    for host in (
        "127.0.0.1:8765",
        "[::1]:8765",
        "localhost",
        "LOCALHOST.",
        "app.localhost:1",
        "hub.test",
        "a.corp.example",
    ):
        assert guard.host_ok(host), host
    for host in ("evil.example", "hub.test.evil.example", "corp.example.evil", "", "a b"):
        assert not guard.host_ok(host), host


def test_a_hub_bound_beyond_loopback_accepts_any_host_unless_allowed_hosts_is_set() -> None:
    assert CrossSiteGuard("0.0.0.0").host_ok("gpu-box.example:8765")
    assert not CrossSiteGuard("0.0.0.0", allowed_hosts=["hub.example"]).host_ok("gpu-box.example")


def test_same_origin_means_same_host_and_port_and_allowed_origins_are_exact() -> None:
    guard = CrossSiteGuard("127.0.0.1", allowed_origins=["https://app.example"])
    assert guard.origin_ok("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert guard.origin_ok("http://localhost", "localhost:80")
    assert guard.origin_ok("https://app.example/", "127.0.0.1:8765")
    assert not guard.origin_ok("http://127.0.0.1:8766", "127.0.0.1:8765")
    assert not guard.origin_ok("http://localhost:8765", "127.0.0.1:8765")
    assert not guard.origin_ok("https://app.example.evil", "127.0.0.1:8765")
    assert not guard.origin_ok("null", "127.0.0.1:8765")
