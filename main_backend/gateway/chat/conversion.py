"""OpenAI chat request -> a backend's ``data``, and a backend's answers -> OpenAI objects (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from main_backend.gateway.chat.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
    completion_id,
    dump,
)

#: OpenAI's default temperature, sent when the client leaves it out (backends default to greedy)
DEFAULT_TEMPERATURE = 1.0
#: fields passed to the backend as they are; the backend enforces them or answers bad_request naming them
PASSED_THROUGH = (
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)


def backend_data(req: ChatCompletionRequest, choice: int = 0) -> dict[str, Any]:
    """The ``data`` of the inference_request for a chat backend (the VLM backend's input).

    Messages keep OpenAI's shape: image parts stay ``image_url`` data URLs, passed through.
    Choice ``i`` of ``n`` is its own request, with ``seed + i`` so that seeded choices differ.
    """
    data: dict[str, Any] = {
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in req.messages],
        "max_tokens": req.token_limit,
        "temperature": DEFAULT_TEMPERATURE if req.temperature is None else req.temperature,
        "top_p": req.top_p,
        "stop": req.stop_list or None,
        "seed": None if req.seed is None else req.seed + choice,
    }
    for name in PASSED_THROUGH:
        data[name] = getattr(req, name)
    if req.stream:
        data["stream"] = True
    return {k: v for k, v in data.items() if v is not None}


def usage_from(data: dict[str, Any]) -> Usage:
    raw = data.get("usage")
    if not isinstance(raw, dict):
        return Usage()
    prompt = _count(raw.get("prompt_tokens"))
    completion = _count(raw.get("completion_tokens"))
    total = _count(raw.get("total_tokens")) or prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def completion_from(data: dict[str, Any], model: str, cid: str | None = None) -> ChatCompletion:
    """A whole ``chat.completion`` from a backend's final ``data: {text, finish_reason, usage}``."""
    return completion_from_choices([data], model, cid)


def completion_from_choices(answers: list[dict[str, Any]], model: str, cid: str | None = None) -> ChatCompletion:
    """One ``chat.completion`` whose choice ``i`` is the backend's answer ``answers[i]`` (usage summed)."""
    usages = [usage_from(data) for data in answers]
    prompt = usages[0].prompt_tokens if usages else 0
    completion = sum(u.completion_tokens for u in usages)
    return ChatCompletion(
        id=cid or completion_id(),
        model=model,
        choices=[_choice(i, data) for i, data in enumerate(answers)],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        system_fingerprint=_str_or_none(answers[0].get("system_fingerprint")) if answers else None,
    )


def _choice(index: int, data: dict[str, Any]) -> Choice:
    calls = data.get("tool_calls") if isinstance(data.get("tool_calls"), list) else None
    text = str(data.get("text") or "")
    return Choice(
        index=index,
        message=AssistantMessage(content=None if calls and not text else text, tool_calls=calls or None),
        finish_reason=str(data.get("finish_reason") or "stop"),
        logprobs=_logprobs(data.get("logprobs")),
    )


def _logprobs(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return {"content": value.get("content") or [], "refusal": None}
    if isinstance(value, list):
        return {"content": value, "refusal": None}
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class ChunkStream:
    """Builds the chunks of one streamed completion; they share an id, a time and a model.

    A backend may send its whole text only in the final answer (no partials), or text in the
    final answer that its partials did not carry yet; ``finish`` sends what is missing.
    """

    model: str
    created: int
    id: str = field(default_factory=completion_id)
    index: int = 0
    sent_text: str = ""
    sent_calls: int = 0
    sent_logprobs: int = 0

    def chunk(
        self,
        delta: Delta,
        finish_reason: str | None = None,
        logprobs: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        lp = {"content": logprobs, "refusal": None} if logprobs else None
        body = dump(
            ChatCompletionChunk(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[ChunkChoice(index=self.index, delta=delta, finish_reason=finish_reason, logprobs=lp)],
                **extra,
            )
        )
        for choice in body["choices"]:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        if body.get("usage") is None:
            body.pop("usage", None)
        if body.get("system_fingerprint") is None:
            body.pop("system_fingerprint", None)
        return body

    def role(self) -> dict[str, Any]:
        return self.chunk(Delta(role="assistant", content=""))

    def content(self, text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        self.sent_text += text
        self.sent_logprobs += len(logprobs or [])
        return self.chunk(Delta(content=text), logprobs=logprobs)

    def partial(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks for one partial answer: ``{"delta": text}`` and/or ``{"tool_calls": [delta, ...]}``."""
        out: list[dict[str, Any]] = []
        logprobs = data.get("logprobs") if isinstance(data.get("logprobs"), list) else None
        delta = data.get("delta")
        if isinstance(delta, str) and delta:
            out.append(self.content(delta, logprobs))
            logprobs = None
        calls = data.get("tool_calls")
        if isinstance(calls, list) and calls:
            self.sent_calls = max([self.sent_calls, *(int(c.get("index", 0)) + 1 for c in calls)])
            self.sent_logprobs += len(logprobs or [])
            out.append(self.chunk(Delta(tool_calls=calls), logprobs=logprobs))
        return out

    def finish(self, data: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
        """The last chunks: text, tool calls and logprobs the partials missed, the finish reason, usage if asked."""
        out: list[dict[str, Any]] = []
        text = str(data.get("text") or "")
        entries = (_logprobs(data.get("logprobs")) or {}).get("content") or []
        missing = entries[self.sent_logprobs :]
        if text.startswith(self.sent_text) and len(text) > len(self.sent_text):
            out.append(self.content(text[len(self.sent_text) :], missing or None))
            missing = []
        raw_calls = data.get("tool_calls")
        calls: list[Any] = raw_calls if isinstance(raw_calls, list) else []
        unsent = [{"index": i, **call} for i, call in enumerate(calls) if i >= self.sent_calls]
        if unsent:
            self.sent_calls = len(calls)
            out.append(self.chunk(Delta(tool_calls=unsent)))
        fingerprint = _str_or_none(data.get("system_fingerprint"))
        reason = str(data.get("finish_reason") or "stop")
        out.append(self.chunk(Delta(), reason, logprobs=missing or None, system_fingerprint=fingerprint))
        if include_usage:
            usage_chunk = self.chunk(Delta())
            usage_chunk["choices"] = []
            usage_chunk["usage"] = dump(usage_from(data))
            out.append(usage_chunk)
        return out
