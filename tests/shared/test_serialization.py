"""The default JSON codec and the pluggable-serializer protocol."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from omniq import limits
from omniq.serialization import JsonSerializer, Serializer, encode

VALUES: list[Any] = [
    None,
    True,
    3,
    2.5,
    "text ü",
    [1, [2, 3]],
    {"a": {"b": [1, 2]}},
    dt.datetime(2026, 11, 27, 10, 30, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 11, 27, 10, 30),
    dt.date(2026, 1, 1),
    dt.time(12, 30, 1),
    dt.timedelta(days=2, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1.10"),
    b"\x00\x01\xff",
    (1, "two"),
    {1, 2, 3},
    {"__omniq__": "looks like a tag", "other": 1},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip(value: Any) -> None:
    codec = JsonSerializer()
    text = codec.dumps(value)
    assert isinstance(text, str)
    decoded = codec.loads(text)
    assert decoded == value
    assert type(decoded) is type(value)


def test_a_tag_spelled_with_escapes_still_decodes_to_its_value() -> None:
    # Text without the tag skips the tag decoder: an escaped key must not slip by it.
    value = uuid.UUID(int=7)
    text = '{"\\u005f_omniq__":"uuid","v":"' + str(value) + '"}'
    assert JsonSerializer().loads(text) == value
    assert JsonSerializer().loads('{"a":[1,"\\u00e9"]}') == {"a": [1, "é"]}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (object(), "builtins.object"),
        ({1: "x"}, "dict key of type int"),
        (float("inf"), "inf"),
        ([lambda: None], "function"),
    ],
)
def test_unsupported_values_raise_type_error_naming_them(value: Any, fragment: str) -> None:
    with pytest.raises(TypeError, match=fragment):
        JsonSerializer().dumps(value)


def test_a_custom_serializer_satisfies_the_protocol() -> None:
    class Upper:
        def dumps(self, obj: Any) -> str:
            return str(obj).upper()

        def loads(self, text: str) -> Any:
            return text.lower()

    assert isinstance(Upper(), Serializer)
    assert isinstance(JsonSerializer(), Serializer)


def nested(depth: int, leaf: Any = 0) -> Any:
    """``depth`` lists inside each other around ``leaf``."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_up_to_the_limit_round_trips_and_deeper_is_a_value_error() -> None:
    codec = JsonSerializer()
    deepest = nested(limits.MAX_NESTING)
    assert codec.loads(codec.dumps(deepest)) == deepest
    for depth in (limits.MAX_NESTING + 1, 2_000, 100_000):
        with pytest.raises(ValueError, match="nested more than 100 levels deep"):
            codec.dumps(nested(depth))
    # tuples, dicts and sets count as levels too
    with pytest.raises(ValueError, match="nested more than 100"):
        codec.dumps(nested(limits.MAX_NESTING, leaf=({"k": (1,)},)))


def test_a_value_that_contains_itself_is_a_value_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        JsonSerializer().dumps(loop)


@pytest.mark.parametrize(
    "value",
    ["\udc80", ["ok", "x\ud800y"], {"k\udfff": 1}, {"k": {"deeper": ("\udc00",)}}, {"\udc80"}],
    ids=["str", "in a list", "dict key", "nested", "in a set"],
)
def test_a_lone_surrogate_is_a_value_error_naming_it(value: Any) -> None:
    with pytest.raises(ValueError, match="lone surrogate") as raised:
        JsonSerializer().dumps(value)
    assert "\\u" in str(raised.value)  # named, as an escape


def test_text_outside_the_basic_plane_is_fine() -> None:
    codec = JsonSerializer()
    assert codec.loads(codec.dumps({"é": ["x\U0001f600"]})) == {"é": ["x\U0001f600"]}


class _Custom:
    """A codec that leaves the rules to omniq: it recurses and writes surrogates."""

    def dumps(self, obj: Any) -> str:
        if isinstance(obj, list):
            return "[" + ",".join(self.dumps(item) for item in obj) + "]"
        return str(obj)

    def loads(self, text: str) -> Any:
        return text


def test_encode_applies_the_rules_to_any_codec() -> None:
    with pytest.raises(ValueError, match="nested more than 100"):
        encode(_Custom(), nested(100_000), "the arguments")
    with pytest.raises(ValueError, match="the encoded text of the result holds a lone surrogate"):
        encode(_Custom(), "a\udc80", "the result")
    assert encode(_Custom(), [1, [2]], "the arguments") == "[1,[2]]"
