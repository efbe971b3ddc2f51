"""A Flask app that enqueues with the blocking ``OmniQ``; a worker runs from the command."""
