"""The Flask example as gunicorn serves it with ``--preload -w 2``: made once in the master.

The master touches the store while loading (a start-up check, as real apps do), before
gunicorn forks; each worker then enqueues on its own. Every response names its pid.
"""

from __future__ import annotations

import os

from flask import Response

from examples.flask_app.app import create_app, omniq

app = create_app()
with app.app_context():
    omniq.facade.stats()  # the store is open in the master before fork()


@app.after_request
def name_the_worker(response: Response) -> Response:
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response
