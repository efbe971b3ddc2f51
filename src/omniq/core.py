"""The facades, in both twins: ``AsyncOmniQ`` and ``OmniQ``."""

from omniq._async.core import AsyncOmniQ
from omniq._sync.core import OmniQ

__all__ = ["AsyncOmniQ", "OmniQ"]
