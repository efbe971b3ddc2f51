"""omniq as a backend for Django's Tasks framework (Django 6.0+, ``pip install omniq[django]``).

Add ``"omniq.contrib.django"`` to ``INSTALLED_APPS``, point a ``TASKS`` alias at
``"omniq.contrib.django.OmniQBackend"`` with ``omniq.Settings`` keywords as its
``OPTIONS``, and run ``python manage.py omniq_worker``. See docs/django.md.

Importing this package needs no configured settings.
"""

from omniq.contrib.django.backend import OmniQBackend

__all__ = ["OmniQBackend"]
