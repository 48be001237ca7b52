"""Minimal settings for the test suite. DATABASE_URL selects PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

import django

from tests.database import is_postgresql, postgresql

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_FROM_EMAIL = "Shop <noreply@shop.example>"
SERVER_EMAIL = "server@shop.example"
STATIC_URL = "static/"
ADMINS: list[Any]
MANAGERS: list[Any]
if django.VERSION >= (6, 0):
    ADMINS = ["admin@shop.example"]
    MANAGERS = ["manager@shop.example"]
else:
    ADMINS = [("Admin", "admin@shop.example")]
    MANAGERS = [("Manager", "manager@shop.example")]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The browser test's live server serves the admin's CSS and scripts.
    "django.contrib.staticfiles",
    "django_cloudmails",
]
MIDDLEWARE = [
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


def _database() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL", "")
    if not is_postgresql(url):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    return postgresql(url)


DATABASES = {"default": _database()}

if django.VERSION >= (6, 1):
    # Django 6.1 deprecates EMAIL_BACKEND (a warning, an error under our pytest config).
    MAILERS = {"default": {"BACKEND": "django_cloudmails.backends.EmailBackend"}}
else:
    EMAIL_BACKEND = "django_cloudmails.backends.EmailBackend"
CLOUDMAILS = {
    "API_KEY": "test-key",
    "API_URL": "http://127.0.0.1:9/v1",
    "WEBHOOK_SECRET": "hook:s3cret",
    "RETRY_BACKOFF": 0.0,
}
