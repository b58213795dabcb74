"""The emulator bills `cf-ai-neurons` on non-streamed text answers only (emulator.billing), at its catalogue's
prices."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cfai_cli.core.cost import Units, estimate_neurons
from cfai_cli.emulator import create_emulator_app
from cfai_cli.emulator.catalogue import CATALOGUE
from cfai_cli.service.models import parse_model

pytestmark = pytest.mark.anyio

RUN = "http://offline.cfai.invalid/client/v4/accounts/offline/ai/run/"
LLAMA = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"
GLM = "@cf/zai-org/glm-4.7-flash"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def post(model: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_emulator_app())) as client:
        return await client.post(RUN + model, json=body, headers={"Authorization": "Bearer t"})


def prices(model: str) -> Any:
    info = next(parse_model(item) for item in CATALOGUE if item["name"] == model)
    assert info is not None and info.prices.known
    return info.prices


@pytest.mark.parametrize("model", [LLAMA, GLM])
async def test_a_non_streamed_text_answer_reports_its_neurons_at_catalogue_prices(model: str) -> None:
    answer = await post(model, {"messages": [{"role": "user", "content": "say something about neurons"}]})
    assert answer.status_code == 200
    usage = answer.json()["result"]["usage"]
    expected = estimate_neurons(prices(model), Units(input_tokens=usage["prompt_tokens"],
                                                     output_tokens=usage["completion_tokens"]))
    assert expected > 0
    assert float(answer.headers["cf-ai-neurons"]) == pytest.approx(expected, abs=1e-6)


async def test_streams_and_other_tasks_report_none() -> None:
    streamed = await post(LLAMA, {"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert streamed.status_code == 200 and "cf-ai-neurons" not in streamed.headers
    embedded = await post("@cf/baai/bge-m3", {"text": ["hello"]})
    assert embedded.status_code == 200 and "cf-ai-neurons" not in embedded.headers
    refused = await post(LLAMA, {"messages": "not a list"})
    assert refused.status_code == 400 and "cf-ai-neurons" not in refused.headers


def test_the_catalogue_prices_parse() -> None:
    priced = [info for info in map(parse_model, CATALOGUE) if info is not None and info.prices.known]
    assert len(priced) >= 30
    assert prices(LLAMA).input_per_m == 0.29 and prices(LLAMA).output_per_m == 2.25
