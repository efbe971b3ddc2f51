"""The Django app: add ``"omniq.contrib.django"`` to ``INSTALLED_APPS``.

It has no models; it brings the ``omniq_worker`` management command, and Django's
system checks look for it when a ``TASKS`` alias uses :class:`OmniQBackend`.
"""

from __future__ import annotations

from django.apps import AppConfig


class OmniQConfig(AppConfig):
    """``omniq.contrib.django`` (label ``omniq_django``: ``django`` alone would be confusing)."""

    name = "omniq.contrib.django"
    label = "omniq_django"
    verbose_name = "omniq"
