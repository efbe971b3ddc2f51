"""Integrations with web frameworks, outside omniq's core (they use the public facades only).

* :mod:`omniq.contrib.django`: a backend for Django's Tasks framework and its
  ``omniq_worker`` management command (``omniq[django]``, Python 3.12+).
* :mod:`omniq.contrib.flask`: the ``OmniQ(app)`` extension.
* :mod:`omniq.contrib.starlette`: a lifespan for Starlette and FastAPI apps.
"""
