from __future__ import annotations

from django.urls import path

from .views import WebhookView

app_name = "cloudmails"

urlpatterns = [
    path("webhook/", WebhookView.as_view(), name="webhook"),
]
