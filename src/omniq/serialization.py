"""Encoding of task arguments and results, shared by every backend and both twins.

The default codec is JSON, extended with tagged objects for the types that task
arguments commonly carry: ``datetime``, ``date``, ``time``, ``timedelta``,
``UUID``, ``Decimal``, ``bytes``, ``set`` and ``tuple``. Nothing in the store can
make omniq run code: decoding only builds these plain values.

Any object with ``dumps(obj) -> str`` and ``loads(text) -> object`` can replace it
(see :class:`Serializer`); producers and workers of one store must use the same.
Whatever the codec, :func:`encode` applies the rules every backend shares: values
nest at most :data:`~omniq.limits.MAX_NESTING` deep, and the text holds no lone
surrogate (SQLite and PostgreSQL store UTF-8), each a ``ValueError`` naming it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from omniq import limits
from omniq._validation import check_text, short_repr

TAG = "__omniq__"


@runtime_checkable
class Serializer(Protocol):
    """What omniq needs of a codec: text out, the same value back."""

    def dumps(self, obj: Any) -> str:
        """Encode ``obj``; raise ``TypeError`` naming what cannot be encoded."""
        ...

    def loads(self, text: str) -> Any:
        """Decode what :meth:`dumps` produced."""
        ...


def _encode_tagged(obj: Any, depth: int) -> dict[str, Any]:
    # Order matters: datetime is a subclass of date.
    if isinstance(obj, dt.datetime):
        return {TAG: "datetime", "v": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {TAG: "date", "v": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {TAG: "time", "v": obj.isoformat()}
    if isinstance(obj, dt.timedelta):
        return {TAG: "timedelta", "v": [obj.days, obj.seconds, obj.microseconds]}
    if isinstance(obj, UUID):
        return {TAG: "uuid", "v": str(obj)}
    if isinstance(obj, Decimal):
        return {TAG: "decimal", "v": str(obj)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "v": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, (set, frozenset)):
        inner = _deeper(depth)
        return {TAG: "set", "v": [_prepare(item, inner) for item in obj]}
    raise TypeError(
        f"cannot serialize a value of type {type(obj).__module__}.{type(obj).__qualname__}: "
        f"{short_repr(obj)} (JSON codec: use str, int, float, bool, None, list, dict, "
        "datetime, date, time, timedelta, UUID, Decimal, bytes, set or tuple)"
    )


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": UUID,
    "decimal": Decimal,
    "bytes": lambda v: base64.b64decode(v),
    "set": set,
    "tuple": tuple,
}


def _too_deep() -> ValueError:
    return ValueError(
        f"cannot serialize a value nested more than {limits.MAX_NESTING} levels deep "
        "(lists, tuples, dicts and sets inside each other), or one that contains itself"
    )


def _deeper(depth: int) -> int:
    """The depth inside one more container; past ``MAX_NESTING`` the value is refused."""
    if depth >= limits.MAX_NESTING:
        raise _too_deep()
    return depth + 1


def _prepare(obj: Any, depth: int = 0) -> Any:
    """Turn ``obj`` into plain JSON values, tagging what JSON lacks.

    ``depth`` counts the containers around ``obj``: too deep a value is refused
    here, before ``json`` itself would recurse out of stack.
    """
    if isinstance(obj, str):
        return obj if obj.isascii() else check_text(obj, f"the string {short_repr(obj)}")
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            raise TypeError(f"cannot serialize the float {obj!r}: JSON has no NaN or infinity")
        return obj
    if isinstance(obj, list):
        inner = _deeper(depth)
        return [_prepare(item, inner) for item in obj]
    if isinstance(obj, tuple):
        inner = _deeper(depth)
        return {TAG: "tuple", "v": [_prepare(item, inner) for item in obj]}
    if isinstance(obj, dict):
        inner = _deeper(depth)
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"cannot serialize a dict key of type {type(key).__qualname__}: "
                    f"{short_repr(key)} (JSON object keys must be str)"
                )
            if not key.isascii():
                check_text(key, f"the dict key {short_repr(key)}")
            out[key] = _prepare(value, inner)
        if TAG in out:
            # A user dict that happens to use our tag key is wrapped so it decodes as itself.
            return {TAG: "dict", "v": out}
        return out
    return _encode_tagged(obj, depth)


def _revive(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None or len(obj) != 2 or "v" not in obj:
        return obj
    if tag == "dict":
        return obj["v"]
    decoder = _DECODERS.get(tag)
    return obj if decoder is None else decoder(obj["v"])


# One encoder and one decoder, made once: json.dumps/loads with options build new ones per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder(object_hook=_revive)
# Text without the tag (nor an escape that could spell it) has no tagged value: it
# decodes without calling back into Python for every object.
_PLAIN_DECODER = json.JSONDecoder()


class JsonSerializer:
    """The default codec: compact JSON plus tagged values (see the module docstring)."""

    def dumps(self, obj: Any) -> str:
        """Encode ``obj`` as JSON text; ``TypeError`` names the first unsupported value."""
        return _ENCODER.encode(_prepare(obj))

    def loads(self, text: str) -> Any:
        """Decode JSON text written by :meth:`dumps`."""
        if TAG in text or "\\u" in text:
            return _DECODER.decode(text)
        return _PLAIN_DECODER.decode(text)


DEFAULT_SERIALIZER: Serializer = JsonSerializer()

# Arguments that are all plain scalars need no walk: JSON holds them as they are.
_SCALARS = frozenset((str, int, float, bool, type(None)))
_PLAIN_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
NO_ARGUMENTS = _PLAIN_ENCODER.encode({"args": [], "kwargs": {}})


def plain_payload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The default codec's text of ``{"args", "kwargs"}`` when every argument is a plain
    scalar (str, int, float, bool, None: exact types); ``None`` for anything else, which
    takes the full path. The hot path of enqueue: most tasks pass ids and numbers."""
    if not args and not kwargs:
        return NO_ARGUMENTS
    scalars = _SCALARS
    for value in args:
        if type(value) not in scalars:
            return None
    for value in kwargs.values():
        if type(value) not in scalars:
            return None
    if TAG in kwargs:
        return None
    try:
        return _PLAIN_ENCODER.encode({"args": list(args), "kwargs": kwargs})
    except ValueError:  # NaN or infinity: the full path says which
        return None


def encode(serializer: Serializer, obj: Any, what: str = "the value") -> str:
    """``serializer.dumps(obj)`` under the rules every backend shares.

    Too deep a value is a ``ValueError`` (never ``RecursionError``), and so is
    text holding a lone surrogate, whichever codec produced it. ``what`` names
    the value in the message.
    """
    if obj is None and type(serializer) is JsonSerializer:
        return "null"  # the result of most tasks: no walk, no encoder
    try:
        text = serializer.dumps(obj)
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(text, str):
        raise TypeError(
            f"the serializer's dumps() must return str, got {type(text).__name__} for {what}"
        )
    return check_text(text, f"the encoded text of {what}")
