"""``OmniQLifespan``: omniq in the lifespan of a Starlette or FastAPI app.

::

    omniq_lifespan = OmniQLifespan(Settings.from_env(), worker=True)
    app = Starlette(routes=routes, lifespan=omniq_lifespan)   # or FastAPI(lifespan=...)

    async def create_greeting(request):
        task_id = await greet.using(omniq_lifespan.omniq).enqueue("Ada")

At start-up the lifespan makes and opens an ``AsyncOmniQ`` on ``settings`` and, with
``worker=True``, starts an
``AsyncWorkerPool`` on the app's event loop, next to the requests (``handle_signals=False``:
the server, uvicorn or hypercorn, owns Ctrl-C and SIGTERM and ends the lifespan). At
shutdown the pool stops claiming, gives running tasks their ``shutdown_timeout`` and puts
back what did not finish; then the store is closed. While the app runs the facade is
:attr:`OmniQLifespan.omniq` and the lifespan state's ``"omniq"`` (``request.state.omniq``);
read it when a request comes, not at import: each start of the app (each ``TestClient``,
each event loop) gets a facade of its own, because an asyncio store belongs to the loop
that opened it.

Fork-safe by construction: making an ``OmniQLifespan`` touches no store, and each
server process opens its own at start-up (``gunicorn -k uvicorn.workers.UvicornWorker
--preload`` or ``uvicorn --workers``). An app with a lifespan of its own enters this one
inside it: ``async with omniq_lifespan(app) as state: yield state``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from omniq import AsyncOmniQ, AsyncWorkerPool, Settings


class OmniQLifespan:
    """A lifespan (``Starlette(lifespan=...)``, ``FastAPI(lifespan=...)``) that opens an
    ``AsyncOmniQ`` and, with ``worker=True``, runs a worker pool on the app's loop.

    ``settings`` default to ``Settings.from_env()``. ``pool_options`` go to
    ``omniq.worker_pool()`` (``concurrency``, ``queues``, ``shutdown_timeout``...);
    ``handle_signals`` is always False.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        worker: bool = False,
        **pool_options: Any,
    ) -> None:
        if not isinstance(worker, bool):
            raise TypeError(f"worker must be True or False, got {worker!r}")
        if "handle_signals" in pool_options:
            raise ValueError("the server handles signals: the lifespan's pool never does")
        self.settings = settings if settings is not None else Settings.from_env()
        self.worker = worker
        self.pool_options = pool_options
        self.pool: AsyncWorkerPool | None = None  # the running pool, while the app runs
        self._omniq: AsyncOmniQ | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r}, worker={self.worker})"

    @property
    def omniq(self) -> AsyncOmniQ:
        """The running app's facade; ``RuntimeError`` before start-up or after shutdown."""
        if self._omniq is None:
            raise RuntimeError(
                "the app is not running: OmniQLifespan.omniq exists from start-up to "
                "shutdown (read it in a request, not at import)"
            )
        return self._omniq

    def __call__(self, app: object) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        """The lifespan of ``app`` (any app: it is not looked at)."""
        return self._lifespan()

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[dict[str, Any]]:
        if self._omniq is not None:
            raise RuntimeError("this OmniQLifespan is already running (one app at a time)")
        omniq = AsyncOmniQ(self.settings)
        await omniq.open()
        self._omniq = omniq
        try:
            if not self.worker:
                yield {"omniq": omniq}
                return
            pool = omniq.worker_pool(handle_signals=False, **self.pool_options)
            async with pool:
                serving = asyncio.get_running_loop().create_task(pool.run())
                self.pool = pool
                try:
                    yield {"omniq": omniq}
                finally:
                    self.pool = None
                    pool.stop()
                    await serving  # running tasks get their grace; the rest is put back
        finally:
            self._omniq = None
            await omniq.close()
