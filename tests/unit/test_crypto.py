"""crypto.py: several keys (all read, the first writes), sealed values that name their key,
rotation, and what is kept of a body without a key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from followup_cli.crypto import (
    DIGEST_PREFIX,
    NOT_STORED,
    UNREADABLE,
    Cipher,
    UnreadableValue,
    body_digest,
    key_id,
    new_key,
    parse_keys,
    sealed_key_id,
    show_body,
    stored_body,
)
from followup_cli.errors import ConfigError

A, B = new_key(), new_key()


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_seal_then_open_gives_the_text_back_and_never_shows_it(text: str) -> None:
    cipher = Cipher(f"{A},{B}")
    sealed = cipher.seal(text)
    assert isinstance(sealed, str) and sealed_key_id(sealed) == key_id(A)
    assert cipher.open(sealed) == text
    assert Cipher(f"{B} {A}").open(sealed) == text  # any order: every key reads
    if len(text) >= 4:
        assert text not in sealed[len("enc1:") + 9 :]
    clear = Cipher(None).seal(text)  # without a key: stored as it is, never taken for sealed
    assert Cipher(None).open(clear) == text and cipher.open(clear) == text
    assert sealed_key_id(clear) is None
    assert cipher.open(cipher.rotate(clear) or clear) == text


def test_keys__commas_or_spaces_each_once_and_a_bad_one_named_by_position() -> None:
    assert parse_keys(f" {A}, {B}\n{A} ") == [A, B]
    assert parse_keys(None) == [] and not Cipher("").enabled
    with pytest.raises(ConfigError, match="key 2 of 2 is not a valid Fernet key"):
        Cipher(f"{A},nope")
    assert Cipher(f"{A},{B}").key_ids == (key_id(A), key_id(B))
    assert key_id(A) != key_id(B) and len(key_id(A)) == 8
    assert key_id(A) not in A and key_id(A) == key_id(A)


def test_a_value_sealed_with_a_key_not_at_hand_is_a_placeholder_or_an_error() -> None:
    sealed = Cipher(A).seal("secret")
    assert Cipher(B).open(sealed) == UNREADABLE
    with pytest.raises(UnreadableValue) as exc:
        Cipher(B).open(sealed, strict=True)
    assert exc.value.key_id == key_id(A)
    assert "secret" not in str(Cipher(None).open(sealed))


def test_rotate__to_the_first_key_once_clear_values_sealed_digests_kept() -> None:
    old, both = Cipher(A), Cipher(f"{B},{A}")
    sealed = old.seal("hello")
    rotated = both.rotate(sealed)
    assert rotated is not None and sealed_key_id(rotated) == key_id(B)
    assert Cipher(B).open(rotated) == "hello"
    assert both.rotate(rotated) is None  # already with the first key
    clear = both.rotate("in clear")
    assert clear is not None and Cipher(B).open(clear) == "in clear"
    assert both.rotate(body_digest("s", "x")) is None
    legacy = Fernet(A.encode()).encrypt(b"first release").decode()  # a bare token
    assert Cipher(B).open(both.rotate(legacy, encrypted=True)) == "first release"
    with pytest.raises(UnreadableValue):
        Cipher(B).rotate(old.seal("lost"))


def test_body_without_a_key_is_a_keyed_hash_unless_store_bodies() -> None:
    value, sealed = stored_body(Cipher(None), "Hi Ana", False, "secret")
    assert value.startswith(DIGEST_PREFIX) and "Ana" not in value and not sealed
    assert value != stored_body(Cipher(None), "Hi Ana", False, "other")[0]
    assert show_body(value).startswith(NOT_STORED) and show_body(None) == NOT_STORED
    assert stored_body(Cipher(None), "Hi Ana", True, "secret") == ("Hi Ana", False)
    value, sealed = stored_body(Cipher(A), "Hi Ana", False, "secret")
    assert sealed and Cipher(A).open(value) == "Hi Ana"
