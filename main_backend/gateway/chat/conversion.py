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


def backend_data(req: ChatCompletionRequest) -> dict[str, Any]:
    """The ``data`` of the inference_request for a chat backend (the VLM backend's input).

    Messages keep OpenAI's shape: image parts stay ``image_url`` data URLs, passed through.
    """
    data: dict[str, Any] = {
        "messages": [m.model_dump(mode="json", exclude_none=True) for m in req.messages],
        "max_tokens": req.token_limit,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop_list or None,
        "seed": req.seed,
    }
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
    return ChatCompletion(
        id=cid or completion_id(),
        model=model,
        choices=[
            Choice(
                message=AssistantMessage(content=str(data.get("text", ""))),
                finish_reason=str(data.get("finish_reason") or "stop"),
            )
        ],
        usage=usage_from(data),
        system_fingerprint=_str_or_none(data.get("system_fingerprint")),
    )


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
    sent_text: str = ""

    def chunk(self, delta: Delta, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        body = dump(
            ChatCompletionChunk(
                id=self.id,
                created=self.created,
                model=self.model,
                choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
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

    def content(self, text: str) -> dict[str, Any]:
        self.sent_text += text
        return self.chunk(Delta(content=text))

    def finish(self, data: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
        """The last chunks: text the partials missed, the finish reason, and usage if asked."""
        out: list[dict[str, Any]] = []
        text = str(data.get("text", ""))
        if text.startswith(self.sent_text) and len(text) > len(self.sent_text):
            out.append(self.content(text[len(self.sent_text) :]))
        fingerprint = _str_or_none(data.get("system_fingerprint"))
        out.append(self.chunk(Delta(), str(data.get("finish_reason") or "stop"), system_fingerprint=fingerprint))
        if include_usage:
            usage_chunk = self.chunk(Delta())
            usage_chunk["choices"] = []
            usage_chunk["usage"] = dump(usage_from(data))
            out.append(usage_chunk)
        return out
