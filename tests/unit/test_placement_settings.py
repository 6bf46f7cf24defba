"""Placement keys of config/models.yaml: local, remote (wss + TLS + token), ray (replicas, resources)."""

from __future__ import annotations

import pytest

from main_backend.config import ConfigError, parse_config
from main_backend.placement.settings import ReplicaRange


def _one(entry: dict[str, object]) -> dict[str, object]:
    return {"model_backends": {"a": entry}}


def test_a_ray_backend_needs_no_port_and_is_not_started_by_the_supervisor() -> None:
    config = parse_config(_one({"placement": "ray", "path": "x", "replicas": 2, "num_cpus": 0.5}))
    backend = config.model_backends["a"]
    assert (backend.placement, backend.replica_range, backend.num_cpus, backend.is_managed) == (
        "ray",
        (2, 2),
        0.5,
        False,
    )
    assert backend.url == "ray://local/a"


def test_an_autoscaling_range_is_read() -> None:
    config = parse_config(_one({"placement": "ray", "replicas": {"min": 1, "max": 4, "target_in_flight": 3}}))
    replicas = config.model_backends["a"].replicas
    assert isinstance(replicas, ReplicaRange)
    assert (replicas.min, replicas.max, replicas.target_in_flight) == (1, 4, 3)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"port": 9000, "replicas": 2}, "replicas only apply to placement 'ray'"),
        ({"port": 9000, "num_gpus": 1}, "num_gpus only apply to placement 'ray'"),
        ({"port": 9000, "tls_fingerprint": "ab" * 32}, "tls_fingerprint only apply to placement 'remote'"),
        ({"placement": "ray", "replicas": 0}, "replicas must be at least 1"),
        ({"placement": "ray", "replicas": {"min": 3, "max": 2}}, "below replicas.min"),
        ({"placement": "remote"}, "needs url"),
        ({"placement": "remote", "url": "ws://10.1.2.3:9000"}, "plain ws:// is refused"),
        ({"placement": "remote", "url": "http://example.org"}, "must be ws:// or wss://"),
        ({"placement": "remote", "url": "wss://gpu1:9000", "tls_fingerprint": "xyz"}, "64 hex digits"),
        ({"path": "x"}, "port: Field required"),
        ({"path": "x", "port": 0}, "port must be 1-65535"),
    ],
)
def test_bad_placement_keys_are_refused_with_a_reason(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_one(entry))


def test_a_remote_backend_takes_host_and_port_from_its_url_and_normalises_the_fingerprint() -> None:
    pin = ":".join(["AB"] * 32)
    config = parse_config(
        _one({"placement": "remote", "url": "wss://gpu1.lab:9443", "token_env": "GPU1_TOKEN", "tls_fingerprint": pin})
    )
    backend = config.model_backends["a"]
    assert (backend.host, backend.port, backend.url, backend.is_managed) == (
        "gpu1.lab",
        9443,
        "wss://gpu1.lab:9443",
        False,
    )
    assert backend.tls_fingerprint == "ab" * 32


def test_plain_ws_is_allowed_on_loopback() -> None:
    config = parse_config(_one({"placement": "remote", "url": "ws://127.0.0.1:9000"}))
    assert config.model_backends["a"].port == 9000


def test_two_ray_backends_must_join_one_cluster() -> None:
    with pytest.raises(ConfigError, match="one Ray cluster per hub"):
        parse_config(
            {
                "model_backends": {
                    "a": {"placement": "ray", "ray_address": "10.0.0.1:6379"},
                    "b": {"placement": "ray", "ray_address": "10.0.0.2:6379"},
                }
            }
        )
