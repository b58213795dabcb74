"""core.redact: every configured secret masked in text and in bytes already on their way."""

from __future__ import annotations

from cfai_cli.core.redact import MASK, Scrubber


def test_secrets_are_masked_longest_first_and_placeholders_are_not() -> None:
    scrub = Scrubber(["token-abcdefgh", "token-abcdefgh-longer", None, "", "offline", "  0123abcd  "])
    assert scrub.secrets == ("token-abcdefgh-longer", "token-abcdefgh", "0123abcd")
    text = "Bearer token-abcdefgh-longer at /accounts/0123abcd/ai and token-abcdefgh; offline mode"
    assert scrub.text(text) == f"Bearer {MASK} at /accounts/{MASK}/ai and {MASK}; offline mode"
    assert not Scrubber([None, "short"]) and Scrubber(["long-enough"])


def test_bytes_keep_their_length() -> None:
    scrub = Scrubber(["0123abcd"])
    data = b'{"error": {"message": "account 0123abcd"}}'
    assert scrub.data(data) == b'{"error": {"message": "account ********"}}'
    assert len(scrub.data(data)) == len(data)
    clean = b"nothing here"
    assert scrub.data(clean) is clean


def test_merged_keeps_both() -> None:
    merged = Scrubber(["first-secret"]).merged(Scrubber(["second-secret"]))
    assert merged.text("first-secret second-secret") == f"{MASK} {MASK}"
