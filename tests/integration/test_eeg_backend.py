"""The EEG backend as a real process in its own venv: JSON and binary windows, bad input, trends, staging."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, backend_process, hub_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_binary, send_json

np = pytest.importorskip("numpy")

from model_backends.eeg_backend.eeg_drowsiness.synthetic_eeg import ALERT, DROWSY, sine, synthetic_eeg  # noqa: E402

EEG_DIR = REPO / "model_backends" / "eeg_backend"
SFREQ = 256
CHANNELS = ["Fp1", "Fp2", "F3", "F4", "Cz", "C4", "P3", "O1"]
BANDS = {"delta", "theta", "alpha", "beta", "gamma"}
INDICES = {"theta_alpha_over_beta", "alpha_over_beta", "theta_over_beta"}
STAGES = {"W", "N1", "N2", "N3", "REM"}


def json_request(request_id: str, signal: Any, **data: Any) -> dict[str, Any]:
    return {
        "type": "inference_request",
        "request_id": request_id,
        "data": {"eeg": signal.tolist(), "sfreq": SFREQ, **data},
    }


def binary_header(request_id: str, signal: Any, **data: Any) -> dict[str, Any]:
    return {
        "type": "inference_request",
        "request_id": request_id,
        "binary_field": "eeg",
        "data": {"shape": list(signal.shape), "sfreq": SFREQ, **data},
    }


async def ask(ws: Any, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    await send_json(ws, message)
    return (await recv_until_final(ws, message["request_id"], timeout))[-1]


async def ask_binary(ws: Any, header: dict[str, Any], signal: Any, timeout: float = 30.0) -> dict[str, Any]:
    await send_binary(ws, header, np.ascontiguousarray(signal, dtype="<f4").tobytes())
    return (await recv_until_final(ws, header["request_id"], timeout))[-1]


@pytest.fixture(scope="session")
def eeg_venv() -> Path:
    """Build the backend's venv the way users do, if it is missing (instant when up to date)."""
    if not (EEG_DIR / ".venv" / "bin" / "python").exists():
        subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "eeg"], cwd=REPO, check=True, timeout=900)
    return EEG_DIR / ".venv"


@pytest.fixture(scope="module")
def eeg(eeg_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One backend for the module, loading at start (the staging model warms up in the background)."""
    with backend_process(EEG_DIR, tmp_path_factory.mktemp("eeg-logs"), args=["--eager"]) as proc:
        yield proc


async def test_json_window_gets_band_powers_indices_and_clean_artifacts(eeg: RunningProcess) -> None:
    signal = synthetic_eeg(4.0, SFREQ, 8, ALERT, seed=1)
    async with await open_ws(eeg.url) as ws:
        answer = await ask(ws, json_request("j1", signal, ch_names=CHANNELS))

    assert answer["type"] == "inference_response", answer
    data = answer["data"]
    assert (data["n_channels"], data["n_samples"], data["duration_s"]) == (8, 1024, 4.0)
    assert list(data["band_power"]) == CHANNELS
    for ch in CHANNELS:
        assert set(data["band_power"][ch]) == BANDS
        assert all(v > 0 for v in data["band_power"][ch].values())
        assert sum(data["relative_power"][ch].values()) == pytest.approx(1.0, abs=1e-3)
        assert set(data["indices"][ch]) == INDICES
        assert data["artifacts"][ch]["flat"] is False
    assert set(data["mean_indices"]) == INDICES
    assert data["bad_channels"] == []
    assert data["stream"] is None
    assert data["filter"]["notch_hz"] == [50.0, 60.0]


async def test_binary_envelope_gives_the_same_answer_as_json(eeg: RunningProcess) -> None:
    signal = synthetic_eeg(4.0, SFREQ, 8, ALERT, seed=2).astype(np.float32)
    async with await open_ws(eeg.url) as ws:
        from_json = await ask(ws, json_request("j2", signal, ch_names=CHANNELS))
        from_binary = await ask_binary(ws, binary_header("b2", signal, ch_names=CHANNELS), signal)

    assert from_binary["type"] == "inference_response", from_binary
    assert from_binary["data"]["band_power"] == from_json["data"]["band_power"]
    assert from_binary["data"]["mean_indices"] == pytest.approx(from_json["data"]["mean_indices"])


async def test_drowsy_signal_scores_higher_indices_than_alert_signal(eeg: RunningProcess) -> None:
    async with await open_ws(eeg.url) as ws:
        alert = await ask(ws, json_request("a", synthetic_eeg(4.0, SFREQ, 4, ALERT, seed=3)))
        drowsy = await ask(ws, json_request("d", synthetic_eeg(4.0, SFREQ, 4, DROWSY, seed=4)))
    for index in INDICES:
        assert drowsy["data"]["mean_indices"][index] > 2 * alert["data"]["mean_indices"][index], index


async def test_flat_clipped_and_mains_channels_are_flagged(eeg: RunningProcess) -> None:
    good = synthetic_eeg(4.0, SFREQ, 1, ALERT, seed=5)
    flat = np.full_like(good, 3.0)
    clipped = np.clip(synthetic_eeg(4.0, SFREQ, 1, ALERT, background_uv=40, seed=6), -30, 30)
    mains = synthetic_eeg(4.0, SFREQ, 1, ALERT, seed=7) + sine(4.0, SFREQ, 50.0, 60.0)
    signal = np.vstack([good, flat, clipped, mains])
    async with await open_ws(eeg.url) as ws:
        answer = await ask(ws, json_request("art", signal, ch_names=["ok", "flat", "clip", "mains"], line_freq=50))

    data = answer["data"]
    flags = {ch: (a["flat"], a["clipped"], a["line_noise"]) for ch, a in data["artifacts"].items()}
    assert flags == {
        "ok": (False, False, False),
        "flat": (True, False, False),
        "clip": (False, True, False),
        "mains": (False, False, True),
    }
    assert data["bad_channels"] == ["flat", "clip"]
    # the notch removed the line: the mains channel's powers look like those of a clean one
    assert data["band_power"]["mains"]["gamma"] < 3 * data["band_power"]["ok"]["gamma"]


MALFORMED: list[tuple[str, dict[str, Any], str, str]] = [
    ("one-dimensional", {"eeg": [1.0] * 1024, "sfreq": 256}, "bad_request", "2-D list"),
    ("strings", {"eeg": [["1.0"] * 1024], "sfreq": 256}, "bad_request", "only numbers"),
    ("ragged", {"eeg": [[1.0] * 1024, [1.0] * 1000], "sfreq": 256}, "bad_request", "same number of samples"),
    ("no sfreq", {"eeg": [[1.0] * 1024]}, "bad_request", "data.sfreq is required"),
    ("sfreq too low", {"eeg": [[1.0] * 1024], "sfreq": 10}, "bad_request", "supported range"),
    ("too short", {"eeg": [[1.0] * 100], "sfreq": 256}, "bad_request", "at least 2 s"),
    ("too many samples", {"eeg": [[0.0] * 70_000], "sfreq": 256}, "too_large", "limit is 65536"),
    ("too many channels", {"eeg": [[0.0] * 512] * 65, "sfreq": 256}, "too_large", "limit is 64"),
    ("not a list", {"eeg": {"C4": [1.0]}, "sfreq": 256}, "bad_request", "list of channels"),
]


async def test_malformed_json_input_gets_typed_errors_and_the_backend_keeps_answering(eeg: RunningProcess) -> None:
    async with await open_ws(eeg.url) as ws:
        for name, data, code, message in MALFORMED:
            answer = await ask(ws, {"type": "inference_request", "request_id": name, "data": data})
            assert answer["type"] == "error", (name, answer)
            assert answer["code"] == code, (name, answer)
            assert message in answer["error"], (name, answer)
        ok = await ask(ws, json_request("after", synthetic_eeg(4.0, SFREQ, 2, ALERT, seed=8)))
        await send_json(ws, {"type": "health_check"})
        pong = await recv_json(ws)
    assert ok["type"] == "inference_response"
    assert pong["type"] == "pong"
    assert pong["model_loaded"] is True


async def test_malformed_binary_input_gets_typed_errors(eeg: RunningProcess) -> None:
    with_nan = synthetic_eeg(4.0, SFREQ, 2, ALERT, seed=9)
    with_nan[1, 100] = np.nan
    good = synthetic_eeg(4.0, SFREQ, 2, ALERT, seed=10)
    async with await open_ws(eeg.url) as ws:
        nan = await ask_binary(ws, binary_header("nan", with_nan), with_nan)
        wrong_shape = await ask_binary(
            ws, {**binary_header("shape", good), "data": {"shape": [3, 1024], "sfreq": 256}}, good
        )
        huge = await ask_binary(ws, {**binary_header("huge", good), "data": {"shape": [2, 10**6], "sfreq": 256}}, good)
        ok = await ask_binary(ws, binary_header("ok", good), good)
    assert (nan["code"], "NaN" in nan["error"]) == ("bad_request", True), nan
    assert (wrong_shape["code"], "needs 12288 bytes" in wrong_shape["error"]) == ("bad_request", True), wrong_shape
    assert huge["code"] == "too_large", huge
    assert ok["type"] == "inference_response", ok


async def test_a_stream_trend_rises_when_its_signal_turns_drowsy(eeg: RunningProcess) -> None:
    async with await open_ws(eeg.url) as ws:
        for i in range(6):
            alert = await ask(
                ws, json_request(f"t{i}", synthetic_eeg(4.0, SFREQ, 2, ALERT, seed=20 + i), stream_id="drive")
            )
        for i in range(6):
            drowsy = await ask(
                ws, json_request(f"u{i}", synthetic_eeg(4.0, SFREQ, 2, DROWSY, seed=40 + i), stream_id="drive")
            )
        other = await ask(ws, json_request("o", synthetic_eeg(4.0, SFREQ, 2, DROWSY, seed=60), stream_id="other"))

    assert alert["data"]["stream"]["trend"]["level"] == "alert"
    trend = drowsy["data"]["stream"]["trend"]
    assert trend["windows"] == 12
    assert trend["ratio"] > 2.0
    assert trend["level"] == "severe"
    assert drowsy["data"]["stream"]["signal_seconds"] == 48.0
    assert other["data"]["stream"]["trend"]["level"] == "calibrating"


async def wait_for_staging_model(ws: Any, timeout: float = 120.0) -> None:
    """The staging model compiles numba kernels in the background after load; wait until it is ready."""
    probe = synthetic_eeg(2.0, SFREQ, 1, ALERT, seed=0)
    deadline = time.monotonic() + timeout
    while True:
        answer = await ask(ws, json_request("probe", probe))
        status = answer["data"]["staging_model"]
        if status == "ready":
            return
        assert status == "warming_up", status
        assert time.monotonic() < deadline, "the staging model did not become ready"
        await asyncio.sleep(0.5)


@pytest.mark.slow  # waits for numba to compile yasa's feature kernels: 15-50 s on 2 busy cores
async def test_a_stream_fed_minutes_of_signal_reports_sleep_staging(eeg: RunningProcess) -> None:
    minutes = synthetic_eeg(330.0, SFREQ, 2, DROWSY, seed=70).astype(np.float32)
    chunk = 30 * SFREQ
    answers = []
    async with await open_ws(eeg.url) as ws:
        await wait_for_staging_model(ws)
        for i in range(minutes.shape[1] // chunk):
            part = minutes[:, i * chunk : (i + 1) * chunk]
            header = binary_header(f"m{i}", part, ch_names=["Fz", "C4"], stream_id="night")
            answers.append((await ask_binary(ws, header, part))["data"]["stream"]["staging"])

    assert [a["status"] for a in answers] == ["collecting"] * 9 + ["ok"] * 2
    assert answers[0] == {"status": "collecting", "channel": "C4", "buffered_s": 30.0, "needed_s": 300.0}
    staged = answers[-1]
    assert staged["channel"] == "C4"
    assert staged["computed"] is True
    assert staged["epochs"] == 11
    assert staged["stage"] in STAGES
    assert set(staged["probabilities"]) == STAGES
    assert sum(staged["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert staged["n1_probability"] == staged["probabilities"]["N1"]
    assert 0.0 <= staged["n1_recent_mean"] <= 1.0
    assert len(staged["recent_stages"]) == 4
    assert set(staged["recent_stages"]) <= STAGES


async def test_the_hub_routes_eeg_windows_to_the_backend(eeg: RunningProcess, tmp_path: Path) -> None:
    # Only the original keys: the hub connects to the backend already running instead of starting one.
    config = {"model_backends": {"eeg": {"host": "127.0.0.1", "port": eeg.port, "request_timeout": 30}}}
    signal = synthetic_eeg(4.0, SFREQ, 2, DROWSY, seed=80).astype(np.float32)
    with hub_process(config, tmp_path, wait_ready=["eeg"]) as hub:
        async with await open_ws(hub.ws) as ws:
            header = {**binary_header("h1", signal, stream_id="hub-eeg"), "model": "eeg"}
            answer = await ask_binary(ws, header, signal)
            bad = await ask(ws, {**json_request("h2", signal[:, :10]), "model": "eeg"})

    assert answer["type"] == "inference_response", answer
    assert answer["data"]["stream"]["stream_id"] == "hub-eeg"
    assert set(answer["data"]["mean_indices"]) == INDICES
    assert bad["type"] == "error"
    assert bad["code"] == "bad_request"
    assert "at least 2 s" in bad["error"]
