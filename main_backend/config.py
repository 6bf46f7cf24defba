"""config/models.yaml as pydantic models: validated at start, errors name the bad key."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from main_backend.backend_name import check_backend_name
from main_backend.placement.settings import PlacementSettings, check_one_ray_address

REPO_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)

DEFAULT_CONFIG = REPO_ROOT / "config" / "models.yaml"

#: The per-backend keys of the original README (only used to warn about a file that sets
#: more than these without saying which format it is in).
LEGACY_KEYS = frozenset({"host", "port", "enabled", "reconnect_interval", "max_reconnect_attempts", "request_timeout"})
#: ``version`` of a config file. 1 (a file without ``version``): the original README's format,
#: whose backends run elsewhere: the hub connects to them. 2: this hub's format: the hub starts
#: every backend that does not say ``managed: false``.
ORIGINAL_FORMAT: Literal[1] = 1
HUB_FORMAT: Literal[2] = 2

#: What a chat model can be bound to do (``capabilities:``); a client may send one as ``model``.
Capability = Literal["vision", "text", "structured_output", "tool_use"]
CAPABILITIES: tuple[Capability, ...] = ("vision", "text", "structured_output", "tool_use")


class ConfigError(Exception):
    """The configuration file is missing, not YAML, or has a bad key (named in the message)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class BackendConfig(PlacementSettings, _Strict):
    """One backend under ``model_backends:``; its key is the name clients use as ``model``.

    Where it runs (a local process, a remote endpoint, Ray replicas) is in ``PlacementSettings``.
    """

    name: str = ""
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)  # 0 only for Ray replicas, which pick their own ports
    managed: bool | None = None
    path: Path | None = None
    entry: str = "main.py"
    venv: Path | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    #: Names of the hub's environment variables this backend also gets (besides the allow-list).
    inherit_env: list[str] = Field(default_factory=list)
    description: str = ""
    chat: bool = False
    model_path: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    memory_mb: int = Field(default=512, ge=0)
    small_variant: dict[str, Any] | None = None
    keep_alive: float = Field(default=300.0, ge=-1)
    eager_load: bool = False
    required: bool = False
    autostart: bool = True
    reconnect_interval: float = Field(default=1.0, gt=0)
    max_reconnect_attempts: int = Field(default=0, ge=0)
    request_timeout: float = Field(default=30.0, gt=0)
    ping_interval: float = Field(default=5.0, gt=0)
    ping_timeout: float = Field(default=3.0, gt=0)
    unhealthy_after: int = Field(default=2, ge=1)
    startup_timeout: float = Field(default=120.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    restart_window: float = Field(default=300.0, gt=0)
    max_queue: int = Field(default=64, ge=1)
    max_in_flight: int = Field(default=4, ge=1)
    stream_backlog: int | None = Field(default=None, ge=1)
    #: A newer frame of a stream replaces its waiting one (cameras). False keeps every chunk of a
    #: stream, in order (EEG: consecutive chunks are one signal, never ``superseded``).
    latest_frame_wins: bool = True
    max_concurrency: int = Field(default=1, ge=1)

    @property
    def url(self) -> str:
        if self.placement == "ray":
            return f"ray://{self.ray_address or 'local'}/{self.name}"
        return self.remote_url or f"ws://{self.host}:{self.port}"

    @property
    def is_managed(self) -> bool:
        return bool(self.managed)

    @property
    def folder(self) -> Path:
        path = self.path or Path("model_backends") / f"{self.name}_backend"
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def venv_dir(self) -> Path:
        venv = self.venv or self.folder / ".venv"
        return venv if venv.is_absolute() else REPO_ROOT / venv

    @property
    def python(self) -> Path:
        return self.venv_dir / "bin" / "python"

    @property
    def requirements(self) -> Path:
        return self.folder / "requirements.txt"


class ExternalProvider(_Strict):
    """An OpenAI-compatible server the gateway can proxy to (Ollama, vLLM, OpenAI...).

    ``timeout`` bounds the wait for the answer's first byte (headers and first chunk),
    ``idle_timeout`` each later wait between chunks: a long, healthy stream is never cut.
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    replaces: str | None = None
    connect_timeout: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=120.0, gt=0)
    idle_timeout: float = Field(default=60.0, gt=0)


class HubConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    api_key_env: str = "HUB_API_KEY"
    admin_key_env: str = "HUB_ADMIN_KEY"
    require_api_key: bool | None = None
    log_dir: Path = Path("logs")
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_connections: int = Field(default=256, ge=1)
    client_max_in_flight: int = Field(default=64, ge=1)
    client_rate_limit: float = Field(default=500.0, gt=0)
    client_send_queue: int = Field(default=256, ge=1)
    #: Bytes of answers that may wait for one client; a client that does not read is cut off beyond it
    #: (a single answer larger than this still goes through when nothing else waits).
    client_send_queue_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Bytes a WebSocket client may send before it has authenticated (first-message auth).
    pre_auth_max_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Seconds from accepting a TCP connection to a complete request head (HTTP or WebSocket upgrade).
    handshake_timeout: float = Field(default=10.0, gt=0)
    #: Seconds an idle keep-alive HTTP connection is kept.
    keepalive_timeout: float = Field(default=30.0, gt=0)
    #: Every TCP connection at once (clients, HTTP, dashboards); default max_connections + 64.
    max_open_connections: int | None = Field(default=None, ge=1)
    memory_budget_mb: int | None = Field(default=None, ge=0)
    #: Host names (besides IP addresses, localhost, the bind address and this machine's name) the
    #: hub answers to; ".example.com" allows its subdomains, "*" any name (no DNS-rebinding defence).
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Browser origins ("https://app.example.com") that may open /ws and send POST/PUT/DELETE.
    allowed_origins: list[str] = Field(default_factory=list)
    shutdown_grace: float = Field(default=10.0, ge=0)
    state_dir: Path = Path(".hub")
    switch_hold_s: float = Field(default=60.0, ge=0)
    hf_cache_dir: Path | None = None
    hf_endpoint: str | None = None

    @property
    def open_connection_cap(self) -> int:
        return self.max_open_connections or self.max_connections + 64

    @property
    def log_path(self) -> Path:
        return self.log_dir if self.log_dir.is_absolute() else REPO_ROOT / self.log_dir

    @property
    def state_path(self) -> Path:
        """Where the runtime state database lives (relative paths are under the repository)."""
        return self.state_dir if self.state_dir.is_absolute() else REPO_ROOT / self.state_dir

    @property
    def hf_cache_path(self) -> Path | None:
        """The Hugging Face cache downloads go to (None: huggingface_hub's default, $HF_HUB_CACHE)."""
        if self.hf_cache_dir is None:
            return None
        return self.hf_cache_dir if self.hf_cache_dir.is_absolute() else REPO_ROOT / self.hf_cache_dir


class Config(_Strict):
    version: Literal[1, 2] = ORIGINAL_FORMAT
    hub: HubConfig = Field(default_factory=HubConfig)
    model_backends: dict[str, BackendConfig] = Field(default_factory=dict)
    external_providers: dict[str, ExternalProvider] = Field(default_factory=dict)
    capabilities: dict[Capability, str] = Field(default_factory=dict)

    @field_validator("model_backends", mode="before")
    @classmethod
    def _name_backends(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        named: dict[str, Any] = {}
        for name, entry in value.items():
            check_backend_name(name, "model_backends key")
            if isinstance(entry, dict):
                entry = dict(entry)
                entry.setdefault("name", name)
            named[name] = entry
        return named

    @model_validator(mode="after")
    def _managed_by_format(self) -> Config:
        """A backend that does not say ``managed`` takes its file's format's default."""
        for name, backend in self.model_backends.items():
            if backend.managed is None:
                extra = sorted(backend.model_fields_set - LEGACY_KEYS - {"name", "managed"})
                backend.managed = self.version >= HUB_FORMAT
                if self.version == ORIGINAL_FORMAT and extra:
                    logger.warning(
                        "model_backends.%s sets %s, but the file has no `version: 2`: it is read in the original "
                        "format, where backends run elsewhere and the hub only connects; add `version: 2` for "
                        "the hub to start it (or `managed: false` to keep this)",
                        name,
                        ", ".join(extra),
                    )
        return self

    @model_validator(mode="after")
    def _ports_unique(self) -> Config:
        seen: dict[tuple[str, int], str] = {}
        for name, backend in self.model_backends.items():
            if backend.placement == "ray":
                continue
            key = (backend.host, backend.port)
            if key in seen:
                raise ValueError(f"model_backends.{name}.port {backend.port} is also used by {seen[key]}")
            seen[key] = name
        check_one_ray_address(self.model_backends)
        return self

    @model_validator(mode="after")
    def _capabilities_bound_to_chat_models(self) -> Config:
        for capability, model in self.capabilities.items():
            if model not in self.chat_models():
                known = ", ".join(self.chat_models()) or "none"
                raise ValueError(
                    f"capabilities.{capability}: {model!r} is not a chat backend or an external provider "
                    f"(chat models: {known})"
                )
        return self

    def chat_models(self) -> list[str]:
        """Names a capability may be bound to: enabled ``chat: true`` backends, then external providers."""
        local = [n for n, b in self.model_backends.items() if b.chat and b.enabled]
        return local + [n for n in self.external_providers if n not in local]

    def secret_env_names(self) -> set[str]:
        """The hub's key variables and every provider's: never passed to a backend."""
        names = {self.hub.api_key_env, self.hub.admin_key_env}
        return names | {p.api_key_env for p in self.external_providers.values() if p.api_key_env}

    def enabled_backends(self) -> dict[str, BackendConfig]:
        return {n: b for n, b in self.model_backends.items() if b.enabled}


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate a models.yaml; raises ``ConfigError`` naming the bad key."""
    file = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from exc
    return parse_config(raw, source=str(file))


def parse_config(raw: Any, source: str = "<config>") -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"] if p != "[key]")
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {message}" if key else f"  {message}")
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from exc
