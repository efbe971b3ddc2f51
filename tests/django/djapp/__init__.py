"""The Django app whose tasks the backend tests enqueue (``djapp.tasks``)."""
