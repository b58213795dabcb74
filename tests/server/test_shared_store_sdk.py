"""The proxy on a PostgreSQL store ([store] url): the real openai SDK against apps whose keys, usage log and
stored responses live in PostgreSQL, as replicas of a shared gateway do."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace

import openai
import pytest

from cfai_cli.core.store_url import StoreConfig
from cfai_cli.settings import Settings
from cfai_cli.store.keys import KeyStore
from cfai_cli.store.responses import ResponseStore
from cfai_cli.store.sql import forget
from cfai_cli.store.usage import UsageLog
from tests.databases import another
from tests.infra.servers import PostgresServer
from tests.sdk import offline_sdk

pytestmark = pytest.mark.anyio
_NAMES = itertools.count()


@pytest.fixture
def shared(settings: Settings, postgres_server: PostgresServer) -> Iterator[Settings]:
    url = postgres_server.create_database(f"gateway_{os.getpid()}_{next(_NAMES)}")
    try:
        yield replace(settings, store=StoreConfig(url=url))
    finally:
        forget(url)


async def test_keys_and_usage_live_in_postgresql(shared: Settings) -> None:
    assert isinstance(shared.storage, str)
    key, record = KeyStore(shared.storage).create("replica")
    async with offline_sdk(shared, key) as sdk:
        answer = await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
        # Revoked through another connection pool (another replica, or `cfai keys revoke` elsewhere): the very
        # next request is refused, though this app had the key cached.
        elsewhere = another(shared.storage)
        assert KeyStore(elsewhere).revoke(record.id)
        elsewhere.close()
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    rows = UsageLog(shared.storage).rows(since=0)  # the recorder flushed at shutdown
    assert [(r.key_id, r.route, r.status) for r in rows if r.key_id] == [(record.id, "chat/completions", 200)]
    assert KeyStore(shared.database).list() == []  # nothing of it in the host's SQLite file


async def test_a_key_minted_elsewhere_works_at_once(shared: Settings) -> None:
    first, _ = KeyStore(shared.storage).create("first")
    async with offline_sdk(shared, first) as sdk:
        await sdk.models.list()  # the app has read (and cached) the keys by now
        elsewhere = another(shared.storage)
        late, _ = KeyStore(elsewhere).create("late")
        elsewhere.close()
        late_sdk = sdk.with_options(api_key=late)
        assert (await late_sdk.models.list()).data


async def test_a_response_stored_by_one_app_is_continued_by_another(shared: Settings) -> None:
    key, record = KeyStore(shared.storage).create("chat")
    async with offline_sdk(shared, key) as sdk:
        first = await sdk.responses.create(model="gpt-4o-mini", input="Remember the word lighthouse.")
    assert ResponseStore(shared.storage).get(first.id, owner=record.id) is not None
    async with offline_sdk(shared, key) as sdk:  # another app (replica) on the same database
        second = await sdk.responses.create(model="gpt-4o-mini", input="Which word?", previous_response_id=first.id)
        items = await sdk.responses.input_items.list(second.id)
    assert second.previous_response_id == first.id and items.data
