"""``omniq_worker``: see :mod:`omniq.contrib.django.worker`."""
