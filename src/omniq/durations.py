"""Durations on the command line: ``30s``, ``5m``, ``1h``, ``7d``, ``1h30m`` or plain seconds.

Units go from the largest to the smallest, each at most once (``2d12h``, ``1m30s``);
each number may have a fraction (``1.5h``). A bare number is seconds (``90``, ``0.5``).
"""

from __future__ import annotations

import math
import re

from omniq import limits

UNITS: dict[str, int] = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_DURATION = re.compile("".join(f"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in UNITS))
_PLAIN = re.compile(rf"(?:{_NUMBER})")
HINT = "use seconds or units such as 30s, 5m, 1h, 7d, 1h30m"


def parse_duration(text: str) -> float:
    """The number of seconds ``text`` stands for; ``ValueError`` naming it otherwise."""
    cleaned = text.strip().lower()
    if _PLAIN.fullmatch(cleaned):
        seconds = float(cleaned)
    else:
        match = _DURATION.fullmatch(cleaned)
        if not cleaned or match is None:
            raise ValueError(f"invalid duration {text!r}: {HINT}")
        seconds = sum(
            float(value) * UNITS[unit] for unit, value in match.groupdict().items() if value
        )
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r}: {HINT}")
    if seconds > limits.MAX_DURATION_SECONDS:
        raise ValueError(f"duration {text!r} is too long: at most 100 years ({HINT})")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: ``1h30m``, ``45s``, ``0.25s``, ``2d``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.3g}s"
    whole = round(seconds)
    parts: list[str] = []
    for unit, size in UNITS.items():
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
