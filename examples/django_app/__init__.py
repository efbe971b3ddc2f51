"""A Django project whose tasks run on omniq: ``OmniQBackend`` and ``manage.py omniq_worker``."""
