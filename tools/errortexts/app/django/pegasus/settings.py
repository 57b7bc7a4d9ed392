"""Settings of the Pegasus Django edition: PostgreSQL from the environment, logs on stderr."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-fixture-key")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["courses"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "pegasus.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DB_NAME"],
        "USER": os.environ.get("DB_USER", "postgres"),
        "HOST": os.environ.get("DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DB_PORT", "5432"),
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
