"""Stock agent frameworks against the proxy in process, the offline emulator behind it.

pydantic-ai's default structured output is a forced tool call (`tool_choice: "required"`), so its Agent with a
pydantic `output_type` is the forced-call path end to end, including a native model that answers in text (the
emulator's TEXT_INSTEAD trigger): cfai recovers the call. The OpenAI Agents SDK runs a function-tool loop over
Chat Completions and over the Responses API. Both reach the app through an `AsyncOpenAI` whose `http_client`
is an in-process transport; tracing is off, so nothing leaves the machine.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from cfai_cli.emulator.content import TEXT_INSTEAD
from cfai_cli.settings import Settings
from tests.sdk import offline_sdk

pytestmark = pytest.mark.anyio


LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
SCOUT = "@cf/meta/llama-4-scout-17b-16e-instruct"
GLM = "@cf/zai-org/glm-4.7-flash"


class City(BaseModel):
    name: str
    population: int
    capital: bool


@pytest.mark.parametrize("model", [LLAMA, SCOUT, GLM])
@pytest.mark.parametrize("prompt", ["Tell me about Paris.", f"Tell me about Paris. {TEXT_INSTEAD}"])
async def test_pydantic_ai_structured_output(settings: Settings, api_key: str, model: str, prompt: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async with offline_sdk(settings, api_key, strict=False) as client:
        agent = Agent(OpenAIChatModel(model, provider=OpenAIProvider(openai_client=client)), output_type=City)
        result = await agent.run(prompt)
    assert isinstance(result.output, City)
    assert result.output == City(name="Ada Lovelace", population=1, capital=True)  # the emulator's schema samples


async def test_pydantic_ai_streamed_structured_output(settings: Settings, api_key: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async with offline_sdk(settings, api_key, strict=False) as client:
        agent = Agent(OpenAIChatModel(LLAMA, provider=OpenAIProvider(openai_client=client)), output_type=City)
        async with agent.run_stream(f"Tell me about Oslo. {TEXT_INSTEAD}") as run:
            output = await run.get_output()
    assert output == City(name="Ada Lovelace", population=1, capital=True)


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("model", [LLAMA, GLM])
async def test_openai_agents_function_tool_loop(settings: Settings, api_key: str, api: str, model: str) -> None:
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"Sunny in {city}, 21 C"

    async with offline_sdk(settings, api_key, strict=False) as client:
        llm = (OpenAIChatCompletionsModel(model=model, openai_client=client) if api == "chat"
               else OpenAIResponsesModel(model=model, openai_client=client))
        agent = Agent(name="weather", instructions="Answer with the tool.", model=llm, tools=[get_weather])
        result = await Runner.run(agent, "What is the weather in Paris?")
    assert asked == ["London"]  # the emulator's sample argument for a `city`
    assert "Sunny in London" in result.final_output
