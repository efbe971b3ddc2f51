"""A Starlette app on ``AsyncOmniQ``, with a worker pool in its lifespan."""
