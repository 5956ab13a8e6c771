"""Settings for `make run` on a developer's machine."""

from fitness.settings.base import *  # noqa: F403
from fitness.settings.base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
