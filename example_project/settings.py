"""A small site wired to django-cloudmails, as a user's project would be.

Runs on SQLite in WAL mode with no other service. Point it at the real CloudMails by
setting CLOUDMAILS_API_URL and CLOUDMAILS_API_KEY; by default it talks to a sandbox on
127.0.0.1:8025 (``python -m django_cloudmails.sandbox``).
"""

from __future__ import annotations

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_FROM_EMAIL = "Example Shop <noreply@shop.example>"
SERVER_EMAIL = "alerts@shop.example"
ADMINS = (
    ["delivered+ops@simulator.cloudmails.test"]
    if django.VERSION >= (6, 0)
    else [("Ops", "delivered+ops@simulator.cloudmails.test")]
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_cloudmails",
    "example_project.demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"
CLOUDMAILS = {
    "API_KEY": os.environ.get("CLOUDMAILS_API_KEY", "sandbox-key"),
    "API_URL": os.environ.get("CLOUDMAILS_API_URL", "http://127.0.0.1:8025/v1"),
    "WEBHOOK_SECRET": os.environ.get("CLOUDMAILS_WEBHOOK_SECRET", "demo:demo-secret"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_cloudmails": {"handlers": ["console"], "level": "WARNING"}},
}
