"""Threads released together, for tests of what runs at once in one process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def run_threads(work: Callable[[int], Any], count: int) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; each closes its database
    connection. Returns the results in thread order; an error in any thread fails."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results
