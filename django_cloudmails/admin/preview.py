"""A delivery's HTML body, served to the sandboxed iframe of its admin page.

An email's HTML is the sender's, and maybe an attacker's: shown in the admin it could
run scripts as the logged-in staff member, post forms, navigate the admin away, or fetch
remote content (a tracking pixel would count an open, and tell its server who looked).
So the body gets its own URL (never inlined into the admin page) whose response forbids
all of that, whether it is framed or opened on its own:

- ``Content-Security-Policy``: nothing loads (``default-src 'none'``) but inline styles
  and ``data:`` images (inline ``cid:`` images are turned into ``data:`` URLs), no form
  posts, no ``<base>``; ``sandbox`` gives the document an opaque origin without scripts;
  ``frame-ancestors 'self'`` lets only the admin frame it;
- the iframe's own ``sandbox`` attribute (nothing allowed) and ``referrerpolicy``;
- ``Referrer-Policy: no-referrer`` and ``X-DNS-Prefetch-Control: off``.

With "load remote images" (``?remote_images=1``) only ``img-src`` opens to http(s).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.html import escape

from ..models import Delivery
from .delivery_page import REMOTE_IMAGES, payload_of

CSP = (
    "default-src 'none'; img-src data:{remote}; style-src 'unsafe-inline'; font-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"
)


def csp(*, remote_images: bool) -> str:
    return CSP.format(remote=" https: http:" if remote_images else "")


def inline_images(html: str, attachments: Any) -> str:
    """``cid:`` references to inline attachments replaced by ``data:`` URLs, so the
    preview shows them as the recipient's mail client does."""
    if not isinstance(attachments, list):
        return html
    for item in attachments:
        if not isinstance(item, dict):
            continue
        content_id, content = item.get("content_id"), item.get("content")
        if not content_id or not isinstance(content, str):
            continue
        kind = str(item.get("content_type") or "application/octet-stream")
        data_url = f"data:{escape(kind)};base64,{''.join(content.split())}"
        html = html.replace(f"cid:{str(content_id).strip('<>')}", data_url)
    return html


def preview_response(request: HttpRequest, delivery: Delivery) -> HttpResponse:
    """The stored HTML body under the headers above (404-like text when there is none)."""
    payload = payload_of(delivery)
    html = payload.get("html")
    remote = request.GET.get(REMOTE_IMAGES) == "1"
    if not isinstance(html, str) or delivery.body_purged_at is not None:
        html = "<p>No HTML body is stored for this delivery.</p>"
    response = HttpResponse(
        inline_images(html, payload.get("attachments")), content_type="text/html; charset=utf-8"
    )
    response["Content-Security-Policy"] = csp(remote_images=remote)
    response["Referrer-Policy"] = "no-referrer"
    response["X-DNS-Prefetch-Control"] = "off"
    response["X-Content-Type-Options"] = "nosniff"
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response
