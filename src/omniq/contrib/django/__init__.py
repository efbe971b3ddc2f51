"""omniq as a backend for Django's Tasks framework (Django 6.0+, ``pip install omniq[django]``).

Add ``"omniq.contrib.django"`` to ``INSTALLED_APPS``, point a ``TASKS`` alias at
``"omniq.contrib.django.OmniQBackend"`` with ``omniq.Settings`` keywords as its
``OPTIONS``, and run ``python manage.py omniq_worker``. See docs/django.md.

Importing this package needs no configured settings.
"""

try:
    import django.tasks  # noqa: F401  # Django 6.0 added the Tasks framework
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "omniq.contrib.django needs Django 6.0 or newer (which needs Python 3.12+): "
        "pip install 'omniq[django]'"
    ) from error

from omniq.contrib.django.backend import OmniQBackend

__all__ = ["OmniQBackend"]
