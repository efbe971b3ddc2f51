"""The bounds omniq puts on durations, times, counts, ids and nesting, and why.

Every value that reaches a store is checked against these at the call that made
it (``enqueue``, ``Settings``, a worker pool, ``list_tasks``, the command line),
so a value one backend, ``datetime`` or the blocking twin cannot represent is a
``ValueError`` there, on every backend alike, and never a crash in a worker.
Decoding applies the same bounds to what it reads back: a stored value outside
them marks the record as corrupt (see :mod:`omniq.records`).

Why these numbers:

* Times are stored as float epoch seconds (SQLite ``REAL``, PostgreSQL ``double
  precision``, JSON numbers in the file backend) and come back as ``datetime``,
  which ends at 9999-12-31.
* PostgreSQL's ``integer`` columns (``max_retries``, ``attempts``) are 32-bit.
* The blocking twin waits with ``threading`` (``join``, ``Event.wait``), which
  refuses a timeout above ``threading.TIMEOUT_MAX`` (about 292 years on Linux and
  macOS, 49.7 days on Windows).
"""

from __future__ import annotations

import datetime as dt
import threading

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

MIN_INTERVAL_SECONDS = 0.001
"""The shortest ``interval``: 1 ms.

``timedelta`` keeps microseconds, so 1e-7 s became 0 and divided by zero when
the next run was computed; and a float epoch near year 9000 is exact to about
30 µs, so a shorter step could give a next run equal to this one.
"""

MAX_DURATION_SECONDS = 100 * 365.25 * 86_400
"""The longest duration (``interval``, ``timeout``, ``--delay``...): 100 years.

With :data:`MAX_ETA` it keeps ``eta + interval + lease + backoff`` well inside
``datetime`` (year 9999), so no schedule computed from valid values overflows.
"""

MAX_WAIT_SECONDS = min(MAX_DURATION_SECONDS, threading.TIMEOUT_MAX)
"""The longest wait a worker may be asked for (task ``timeout``, poll interval,
lease, shutdown grace): 100 years, or less where ``threading`` cannot wait that
long (Windows: ``threading.TIMEOUT_MAX`` is 49.7 days).
"""

MIN_ETA = EPOCH
"""The earliest ``eta``: 1970-01-01 UTC. Earlier epochs are negative, which
``datetime.fromtimestamp`` refuses on Windows; any earlier eta means "due now"
anyway, and the Unix epoch already sorts before every real task.
"""

MAX_ETA = dt.datetime(9000, 1, 1, tzinfo=UTC)
"""The latest ``eta``: 9000-01-01 UTC, far enough below 9999 that adding
:data:`MAX_DURATION_SECONDS` (an interval, a lease) and a retry backoff stays a
valid ``datetime``.
"""

# The range a stored time must decode into: ``datetime``'s own, less a day at each
# end so that showing it in any local time zone cannot overflow. A stored time
# outside it makes the record corrupt.
MIN_STORED_TIME = dt.datetime(1, 1, 2, tzinfo=UTC)
MAX_STORED_TIME = dt.datetime(9999, 12, 30, tzinfo=UTC)

MAX_INT32 = 2**31 - 1
"""The largest ``max_retries`` (and any count omniq stores or passes to a query,
such as ``list_tasks(limit=...)``/``offset``, ``concurrency``): PostgreSQL's
``integer``, so every backend accepts the same values.
"""

MAX_RETRIES = MAX_INT32
MAX_COUNT = MAX_INT32

MAX_NESTING = 100
"""How deep containers (lists, tuples, dicts, sets) may nest in arguments and
results, counted from the value the codec encodes. Deeper values would make
JSON encoding and decoding recurse past Python's stack (``RecursionError``).
"""

MAX_TASK_ID_LENGTH = 255
"""The longest task id accepted by ``get_task``/``cancel``/``retry``: omniq's ids
are 36-character UUIDs, and 255 is the longest file name most file systems allow
(the file backend names files after ids).
"""
