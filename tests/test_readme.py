"""The README's urls.py runs as pasted into a fresh ``startproject``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def urls_snippet() -> str:
    readme = (ROOT / "README.rst").read_text()
    after = readme.split("Your project's ``urls.py``", 1)[1]
    block = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", after)
    assert block
    return "\n".join(line[4:] for line in block.group(1).splitlines()) + "\n"


def test_the_urls_snippet_runs_in_a_fresh_project(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "shop", str(tmp_path)], check=True
    )
    (tmp_path / "shop" / "urls.py").write_text(urls_snippet())
    with (tmp_path / "shop" / "settings.py").open("a") as settings:
        settings.write(
            '\nINSTALLED_APPS += ["django_cloudmails"]\n'
            'CLOUDMAILS = {"API_KEY": "key", "WEBHOOK_SECRET": "hook:long-random-password"}\n'
        )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    script = (
        "from django.urls import reverse; "
        "print(reverse('cloudmails:webhook'), reverse('admin:cloudmails_dashboard'))"
    )

    check = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    urls = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert check.returncode == 0, check.stderr
    webhook, dashboard = urls.stdout.split()[-2:]
    assert (webhook, dashboard) == ("/cloudmails/webhook/", "/admin/cloudmails/delivery/dashboard/")
