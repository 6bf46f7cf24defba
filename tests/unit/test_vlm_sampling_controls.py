"""Per-row decoding controls of the VLM engine: bias, penalties, logprobs, the context check (no model)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from model_backends.vlm_backend.vlm_engine.context_limit import ContextLengthExceededError, ContextLimit  # noqa: E402
from model_backends.vlm_backend.vlm_engine.row_controls import RowControls  # noqa: E402
from model_backends.vlm_backend.vlm_engine.sampling_controls import (  # noqa: E402
    LogprobRecorder,
    RowControlsProcessor,
    RowState,
    apply_bias_and_penalties,
)


def test_logit_bias_is_added_and_penalties_follow_openais_definitions() -> None:
    logits = torch.zeros(6)
    controls = RowControls(logit_bias={1: 5.0, 99: 3.0}, presence_penalty=0.5, frequency_penalty=0.25)
    apply_bias_and_penalties(controls, [2, 2, 2, 3], logits)
    # token 1: bias only; token 2: 3 times -> 0.5 + 3*0.25; token 3: once -> 0.5 + 0.25; ids past the vocab ignored
    assert logits.tolist() == [0.0, 5.0, -1.25, -0.75, 0.0, 0.0]


def test_the_processor_changes_only_rows_with_controls_and_records_their_logprobs() -> None:
    recorder = LogprobRecorder(top=2, decode=lambda t: f"<{t}>")
    rows = [
        RowState(RowControls(logit_bias={0: 10.0}, top_logprobs=2), recorder, lambda: False),
        RowState(RowControls(), None, lambda: False),
        RowState(RowControls(logit_bias={0: 10.0}), None, lambda: True),  # finished: left alone
    ]
    scores = torch.zeros(3, 4)
    out = RowControlsProcessor(rows, prompt_len=2)(torch.zeros(3, 3, dtype=torch.long), scores)
    assert out[0, 0] == 10.0 and out[1].tolist() == [0.0] * 4 and out[2].tolist() == [0.0] * 4
    recorder.chose(0)
    [entry] = recorder.entries
    assert entry["token"] == "<0>" and entry["bytes"] == list(b"<0>")
    assert math.isclose(entry["logprob"], 10.0 - math.log(math.exp(10.0) + 3.0), abs_tol=1e-6)
    assert entry["top_logprobs"][0]["token"] == "<0>" and len(entry["top_logprobs"]) == 2
    assert recorder.unsent() == [entry] and recorder.unsent() == []


class FakeTokenizer:
    def get_vocab(self) -> dict[str, int]:
        return {"a": 0, "abcd": 1, "é": 2}

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)


def test_a_prompt_is_refused_by_its_bytes_alone_when_it_cannot_fit() -> None:
    limit = ContextLimit(FakeTokenizer(), window=100)
    assert limit.longest_token_bytes() == 4
    limit.check_bytes(400, 10, explicit=False)  # could be 100 tokens: tokenize and count
    with pytest.raises(ContextLengthExceededError, match="at least 101 tokens"):
        limit.check_bytes(404, 10, explicit=False)


def test_max_tokens_must_fit_beside_the_prompt_or_is_shortened_when_defaulted() -> None:
    limit = ContextLimit(FakeTokenizer(), window=100)
    assert limit.fit(90, 256, explicit=False) == 10
    assert limit.fit(90, 10, explicit=True) == 10
    with pytest.raises(ContextLengthExceededError, match="90 tokens in the messages and 11 in the completion"):
        limit.fit(90, 11, explicit=True)
    with pytest.raises(ContextLengthExceededError) as caught:
        limit.fit(100, 1, explicit=False)
    assert caught.value.code.value == "context_length_exceeded"
