"""core.history: what the exchange log keeps of a turn, and a logged conversation as the next request's history."""

from __future__ import annotations

from cfai_cli.core.history import MAX_INLINE, Turn, history, responses_items, said, storable, system_of


def words(text: str) -> int:
    return len(text.split())


def test_storable_keeps_small_images_and_replaces_large_ones() -> None:
    small = "data:image/png;base64," + "A" * 100
    large = "data:image/jpeg;base64," + "A" * (MAX_INLINE + 4096)
    message = {"role": "user", "content": [{"type": "text", "text": "look"},
                                           {"type": "image_url", "image_url": {"url": small}},
                                           {"type": "image_url", "image_url": {"url": large}},
                                           {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}
    kept = storable(message)["content"]
    assert kept[:2] == message["content"][:2] and kept[3] == message["content"][3]
    assert kept[2] == {"type": "text", "text": "[image/jpeg image of 6 KB sent here; the log keeps no copy]"}
    assert storable({"role": "user", "content": "plain"}) == {"role": "user", "content": "plain"}


def test_said_and_system_of() -> None:
    messages = [{"role": "system", "content": "S1"}, {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "image_url"}]},
                {"role": "developer", "content": "S2"}]
    assert said(messages) == "a\n\nb"
    assert system_of(messages) == "S2" and system_of(messages[1:3]) is None


def test_history_lays_turns_out_and_drops_the_oldest_past_the_budget() -> None:
    turns = [Turn([{"role": "system", "content": "S"}, {"role": "user", "content": f"question {i} " * 10}],
                  f"answer {i}", []) for i in range(5)]
    every, dropped = history(turns, budget=10_000, count=words)
    assert dropped == 0 and len(every) == 10
    assert every[0] == {"role": "user", "content": "question 0 " * 10}  # system prompts are the caller's
    assert every[1] == {"role": "assistant", "content": "answer 0"}
    turn_cost = 2 * 4 + 20 + 2  # two messages' template tokens, the question, the answer
    kept, dropped = history(turns, budget=2 * turn_cost, count=words)
    assert dropped == 3 and kept == every[6:]
    newest, dropped = history(turns, budget=1, count=words)
    assert dropped == 4 and newest == every[8:]  # the newest turn always goes


def test_tool_calls_become_text_and_items_follow_the_messages() -> None:
    turns = [Turn([{"role": "user", "content": "weather?"}], "", [{"name": "get_weather", "arguments": "{}"}])]
    messages, _ = history(turns, budget=100, count=words)
    assert messages[1] == {"role": "assistant", "content": "(called get_weather({}))"}
    assert responses_items(messages) == [{"role": "user", "content": "weather?"},
                                         {"role": "assistant", "content": "(called get_weather({}))"}]
