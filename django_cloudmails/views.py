"""Placeholder until the webhook view lands (issue 4)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"error": "not implemented"}, status=501)
