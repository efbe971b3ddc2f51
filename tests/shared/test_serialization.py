"""The default JSON codec and the pluggable-serializer protocol."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from omniq.serialization import JsonSerializer, Serializer

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
