"""The WSGI app of the test site gunicorn serves (settings: ``tests.gunicorn_site``)."""

from __future__ import annotations

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
