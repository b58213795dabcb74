"""Router.chain: made once per name and reused, and what it gives is the caller's own."""

from __future__ import annotations

import pytest

from cfai_cli.core.routing import DEFAULT_UPSTREAM, RoutingConfig, Target
from cfai_cli.errors import InvalidRequest, ModelNotFound
from cfai_cli.upstream.router import Lane, Router

LLAMA = "@cf/meta/llama-3.1-8b-instruct"
VISION = "@cf/meta/llama-3.2-11b-vision-instruct"


def router() -> Router:
    config = RoutingConfig(routes={"smart": (Target(DEFAULT_UPSTREAM, "fast"), LLAMA)})
    return Router(config, [Lane(DEFAULT_UPSTREAM, DEFAULT_UPSTREAM, "cloudflare", None)],
                  aliases={"fast": LLAMA}, vision_aliases={"fast": VISION})


def test_a_chain_is_the_same_every_time_and_each_caller_gets_its_own_list() -> None:
    routes = router()
    first = routes.chain("smart")
    assert first == ("smart", [Target(DEFAULT_UPSTREAM, LLAMA), Target(DEFAULT_UPSTREAM, LLAMA)])
    first[1].clear()  # a caller's list is its own
    assert routes.chain("smart") == ("smart", [Target(DEFAULT_UPSTREAM, LLAMA), Target(DEFAULT_UPSTREAM, LLAMA)])
    assert routes.chain("fast") == (None, [Target(DEFAULT_UPSTREAM, LLAMA)])
    assert routes.chain("fast", vision=True) == (None, [Target(DEFAULT_UPSTREAM, VISION)])  # kept apart
    assert routes.chain("fast") == (None, [Target(DEFAULT_UPSTREAM, LLAMA)])


def test_a_name_that_fails_fails_every_time() -> None:
    routes = router()
    for _ in range(2):
        with pytest.raises(ModelNotFound):
            routes.chain("no-such-model")
        with pytest.raises(InvalidRequest):
            routes.chain("@cf/../etc")
