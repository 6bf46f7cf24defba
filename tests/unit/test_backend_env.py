"""A backend's environment: the allow-list, its own env, and never the hub's secrets."""

from __future__ import annotations

from pathlib import Path

from main_backend.backend_env import backend_environment
from main_backend.config import BackendConfig
from main_backend.supervisor import Supervisor

HUB_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/u",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "CUDA_VISIBLE_DEVICES": "0",
    "HF_HOME": "/cache/hf",
    "HF_TOKEN": "hf_secret",
    "HUGGING_FACE_HUB_TOKEN": "hf_secret2",
    "OMP_NUM_THREADS": "2",
    "PYTHONPATH": "/src",
    "HUB_API_KEY": "client-secret",
    "HUB_ADMIN_KEY": "admin-secret",
    "OPENAI_API_KEY": "sk-secret",
    "MY_PROVIDER_CRED": "provider-secret",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "SOME_APP_SETTING": "x",
}


def test_only_allow_listed_variables_pass_and_no_credential_does() -> None:
    env = backend_environment(HUB_ENV, {}, withheld={"MY_PROVIDER_CRED"})
    assert {"PATH", "HOME", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "HF_HOME", "OMP_NUM_THREADS"} <= set(env)
    assert env["PYTHONPATH"] == "/src" and env["PYTHONUNBUFFERED"] == "1"
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUB_API_KEY", "HUB_ADMIN_KEY", "OPENAI_API_KEY"):
        assert secret not in env
    assert "MY_PROVIDER_CRED" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "SOME_APP_SETTING" not in env


def test_the_backends_own_env_and_inherit_env_are_added_but_withheld_names_never_inherited() -> None:
    env = backend_environment(
        HUB_ENV,
        {"ECHO_MODE": "fast"},
        inherit=["SOME_APP_SETTING", "HUB_API_KEY"],
        withheld={"HUB_API_KEY"},
    )
    assert env["ECHO_MODE"] == "fast" and env["SOME_APP_SETTING"] == "x"
    assert "HUB_API_KEY" not in env


def test_the_supervisor_gives_its_token_and_config_env_and_withholds_the_hub_keys(tmp_path: Path) -> None:
    config = BackendConfig(name="m", port=9999, path=tmp_path, env={"A": "1"}, inherit_env=["SOME_APP_SETTING"])
    supervisor = Supervisor(
        None,  # type: ignore[arg-type]
        tmp_path,
        "per-run-token",
        withheld_env={"HUB_API_KEY", "HUB_ADMIN_KEY", "MY_PROVIDER_CRED"},
        parent_env={**HUB_ENV, "HUB_BACKEND_TOKEN": "stale"},
    )
    env = supervisor.environment(config)
    assert env["HUB_BACKEND_TOKEN"] == "per-run-token" and env["A"] == "1" and env["SOME_APP_SETTING"] == "x"
    assert not {"HUB_API_KEY", "HUB_ADMIN_KEY", "MY_PROVIDER_CRED", "OPENAI_API_KEY", "HF_TOKEN"} & set(env)
