"""Django management commands of ``omniq.contrib.django``."""
