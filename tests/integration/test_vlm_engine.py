"""The VLM backend's continuous engine on the tiny offline model: joining, leaving, per-row stops, controls.

One run of ``tests/support/vlm_engine_harness.py`` in the backend's venv exercises the engine
in-process and reports what happened; plain ``model.generate`` on each request alone is the
reference for what every row must answer, however it was batched.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from typing import Any

import pytest

from tests.support.processes import HUB_PYTHON, REPO

Image = pytest.importorskip("PIL.Image")
np = pytest.importorskip("numpy")

VLM_DIR = REPO / "model_backends" / "vlm_backend"
VLM_PYTHON = VLM_DIR / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "vlm"], cwd=REPO, check=True, timeout=900)
    model = tmp_path_factory.mktemp("tiny-vlm-engine") / "model"
    subprocess.run(
        [str(VLM_PYTHON), "-m", "tests.support.tiny_vlm", str(model)],
        cwd=REPO,
        check=True,
        timeout=300,
        capture_output=True,
    )
    pixels = (np.arange(48 * 64 * 3) % 251).astype("uint8").reshape(48, 64, 3)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    cmd = [str(VLM_PYTHON), "-m", "tests.support.vlm_engine_harness", str(model), image]
    done = subprocess.run(cmd, cwd=REPO, check=True, timeout=300, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_rows_joining_a_running_batch_answer_exactly_as_alone(report: dict[str, Any]) -> None:
    joining = report["joining"]

    assert joining["max_running"] >= 3  # they really shared decode steps
    for result, reference in zip(joining["results"], joining["reference_texts"], strict=True):
        assert result["text"] == reference


def test_each_row_leaves_at_its_own_max_tokens(report: dict[str, Any]) -> None:
    joining = report["joining"]

    counts = [r["usage"]["completion_tokens"] for r in joining["results"]]
    assert counts == joining["max_tokens"]
    assert all(r["finish_reason"] == "length" for r in joining["results"])
    assert joining["steps"] < sum(counts)  # rows left while others went on: fewer steps than tokens


def test_a_row_stops_at_its_own_stop_sequence_while_the_others_go_on(report: dict[str, Any]) -> None:
    case = report["stop_cancel"]

    assert case["stopped"]["finish_reason"] == "stop"
    assert case["stopped"]["text"] == case["alone"][: case["alone"].index(case["stop_at"])]
    assert case["plain"]["text"] == case["alone"]
    assert case["plain"]["usage"]["completion_tokens"] == 30


def test_a_cancelled_row_ends_with_cancelled(report: dict[str, Any]) -> None:
    assert report["stop_cancel"]["cancelled"]["code"].endswith("CANCELLED")


def test_logit_bias_and_processors_are_applied_to_their_row_only(report: dict[str, Any]) -> None:
    c = report["controls"]
    bias, allowed = c["bias_token"], c["processor_token"]

    assert c["bias_seen"][-1] == [bias] * 5
    assert c["processor_saw"] == [[allowed] * n for n in range(5)]  # generated so far, prompt excluded
    assert c["processor_count"] == 5
    assert c["plain_text"] == c["plain_reference"]


def test_a_frequency_penalty_keeps_a_biased_token_from_repeating(report: dict[str, Any]) -> None:
    seen = report["controls"]["penalised_seen"][-1]

    assert seen[0] == report["controls"]["bias_token"]  # the bias alone would pick it every time
    assert seen.count(seen[0]) == 1


def test_top_logprobs_come_with_each_token(report: dict[str, Any]) -> None:
    c = report["controls"]
    entries = c["logprobs"]["content"]

    assert len(entries) == 4  # max_tokens
    assert c["logprobs_text"] == c["plain_text"]  # asking for logprobs changes nothing else
    for entry in entries:
        assert len(entry["top_logprobs"]) == 3
        assert entry["logprob"] == pytest.approx(entry["top_logprobs"][0]["logprob"])  # greedy: the best
        assert entry["logprob"] < 0


def test_a_seeded_sampled_row_repeats_itself_inside_a_batch(report: dict[str, Any]) -> None:
    first, second = report["controls"]["seeded_texts"]

    assert first == second


def test_the_engine_runs_one_generation_thread(report: dict[str, Any]) -> None:
    assert report["threads"].count("vlm-engine") == 1


def test_requests_still_being_prepared_share_one_prefill(report: dict[str, Any]) -> None:
    assert report["gathering"]["prefills_gathered"] == 1
    assert report["gathering"]["prefills_plain"] >= 2  # the same arrivals with nobody preparing: no wait


def test_image_requests_arriving_together_are_preprocessed_in_one_call_with_the_lone_result(
    report: dict[str, Any],
) -> None:
    case = report["batched_preparing"]

    assert case["prepared"] == 8
    assert case["calls"] <= 3  # the first alone, the rest queued behind it in one or two calls
    assert all(case["same_as_alone"])  # the same token ids and image tensors as prepared one by one
    assert len(set(case["lengths"])) > 1  # different prompt lengths: padding was stripped per row
    assert all(isinstance(text, str) for text in case["answers"])
    # a processor call that breaks half-way fails every request it took (or that waited), none hangs
    assert case["broken_hung"] == 0
    assert case["broken_errors"] == ["processor broke"] * 4


def test_fused_kernel_routing_covers_every_layer_and_keeps_the_logits(report: dict[str, Any]) -> None:
    case = report["fused_routing"]

    # the tiny model's decoder: RMSNorms (two per layer and the last), gated SiLU MLPs, rotary attention
    assert case["counts"]["rms_norm"] >= 3
    assert case["counts"]["mlp"] >= 1
    assert case["counts"]["rotary"] >= 1
    assert case["max_diff"] <= 1e-3 * max(case["scale"], 1.0)
