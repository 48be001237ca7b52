"""The example project's URLs plus the benchmark's baseline, a no-op view at /noop/."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from example_project.urls import urlpatterns as example_urlpatterns


@csrf_exempt
def noop(request: HttpRequest) -> JsonResponse:
    """The baseline: reads the body and answers like the webhook view, stores nothing."""
    request.read()
    return JsonResponse({"received": 1, "new": 1, "invalid": []})


urlpatterns = [path("noop/", noop), *example_urlpatterns]
