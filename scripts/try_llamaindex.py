"""Run LlamaIndex's OpenAI LLMs against a running `cfai serve` and print one PASS/FAIL line per feature.

By hand, not in the test suite: llama-index-llms-openai pulls in llama-index-core (nltk, numpy, SQLAlchemy,
~290 MB, ~30 s to install). In a separate venv:

    pip install llama-index-llms-openai        # 0.8.3 with llama-index-core 0.14.25 when last run
    cfai serve --offline --no-auth --port 3457 &
    python scripts/try_llamaindex.py http://127.0.0.1:3457/v1

Covers `OpenAI` (Chat Completions) and `OpenAIResponses` (Responses API) on a native model (gpt-4o: Llama 4
Scout), a chat-dialect model (gpt-5: gpt-oss-120b) and a small native one (gpt-4o-mini). `[emulator:text]`
makes a native emulated model answer a forced call in text, so cfai's recovery is exercised too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.program import FunctionCallingProgram
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai import OpenAI, OpenAIResponses
from pydantic import BaseModel

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3457/v1"
MODELS = ["gpt-4o", "gpt-5", "gpt-4o-mini"]
results: list[tuple[str, bool, str]] = []
calls: list[str] = []
runner = asyncio.Runner()  # one loop for every async check: the LLM's AsyncOpenAI client is bound to it


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str
    population: int


def get_weather(location: str) -> str:
    """Current weather for a city."""
    calls.append(location)
    return f"Sunny and 21 C in {location}"


WEATHER = FunctionTool.from_defaults(fn=get_weather)


def check(name: str, run: Callable[[], Any]) -> None:
    try:
        results.append((name, True, str(run())[:120]))
    except Exception as exc:  # a survey: report every failure and go on
        results.append((name, False, f"{type(exc).__name__}: {exc}"[:300]))


def sync(coro: Coroutine[Any, Any, Any]) -> Any:
    return runner.run(coro)


def tool_names(llm: FunctionCallingLLM, response: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(t.tool_name, t.tool_kwargs) for t in llm.get_tool_calls_from_response(response)]


def ran_the_tool(run: Callable[[], Any]) -> Any:
    before = len(calls)
    out = run()
    assert len(calls) == before + 1, "the tool did not run"
    return out


async def astream(llm: FunctionCallingLLM, messages: list[ChatMessage]) -> str:
    return "".join([c.delta or "" async for c in await llm.astream_chat(messages)])


def last_of(parts: Any) -> Any:
    items = list(parts)
    return items[-1] if items else None


def streamed_object(llm: FunctionCallingLLM) -> Any:
    city = last_of(llm.stream_structured_predict(City, PromptTemplate("Tell me about {city}."), city="Lyon"))
    assert city is not None and city.name, f"the last partial object is empty: {city!r}"
    return city


def program(llm: FunctionCallingLLM, prompt: str) -> City:
    run = FunctionCallingProgram.from_defaults(output_cls=City, prompt_template_str=prompt, llm=llm,
                                               tool_required=True)
    city = run(city="Paris")
    assert isinstance(city, City)
    return city


async def run_agent(llm: FunctionCallingLLM) -> str:
    """A workflow agent: it calls the tool, then answers with its result (the workflow needs a running loop)."""
    agent = FunctionAgent(tools=[WEATHER], llm=llm, system_prompt="Use the tools.")
    return str(await agent.run(user_msg="What is the weather in Paris?"))


def suite(label: str, llm: FunctionCallingLLM) -> None:
    hello = [ChatMessage(role="user", content="Say hello")]
    check(f"{label} chat", lambda: llm.chat(hello).message.content)
    check(f"{label} stream_chat", lambda: "".join(c.delta or "" for c in llm.stream_chat(hello)))
    check(f"{label} complete", lambda: llm.complete("Say hello").text)
    check(f"{label} stream_complete", lambda: "".join(c.delta or "" for c in llm.stream_complete("Say hello")))
    check(f"{label} achat", lambda: sync(llm.achat(hello)).message.content)
    check(f"{label} astream_chat", lambda: sync(astream(llm, hello)))
    check(f"{label} chat_with_tools", lambda: tool_names(llm, llm.chat_with_tools([WEATHER], user_msg="Weather?")))
    check(f"{label} chat_with_tools tool_required, model answers in text", lambda: tool_names(
        llm, llm.chat_with_tools([WEATHER], user_msg="Weather? [emulator:text]", tool_required=True)))
    check(f"{label} stream_chat_with_tools", lambda: tool_names(
        llm, last_of(llm.stream_chat_with_tools([WEATHER], user_msg="Weather in Rome?"))))
    check(f"{label} predict_and_call", lambda: ran_the_tool(
        lambda: llm.predict_and_call([WEATHER], "What is the weather in Paris?").response))
    check(f"{label} structured_predict", lambda: llm.structured_predict(
        City, PromptTemplate("Tell me about {city}."), city="Paris"))
    check(f"{label} astructured_predict", lambda: sync(llm.astructured_predict(
        City, PromptTemplate("Tell me about {city}."), city="Nice")))
    check(f"{label} stream_structured_predict", lambda: streamed_object(llm))
    check(f"{label} as_structured_llm", lambda: llm.as_structured_llm(City).chat(
        [ChatMessage(role="user", content="Tell me about Bern.")]).message.content)
    check(f"{label} FunctionCallingProgram tool_required", lambda: program(llm, "Tell me about {city}."))
    check(f"{label} FunctionCallingProgram tool_required, model answers in text",
          lambda: program(llm, "Tell me about {city}. [emulator:text]"))
    check(f"{label} FunctionAgent.run", lambda: ran_the_tool(lambda: sync(run_agent(llm))))


def main() -> int:
    with runner:
        for model in MODELS:
            suite(f"OpenAI({model})", OpenAI(model=model, api_base=BASE, api_key="sk-cfai", max_retries=0))
            suite(f"OpenAIResponses({model})",
                  OpenAIResponses(model=model, api_base=BASE, api_key="sk-cfai", max_retries=0))
    width = max(len(name) for name, _, _ in results)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
