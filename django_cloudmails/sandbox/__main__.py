"""``python -m django_cloudmails.sandbox``: run the sandbox until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from .simulator import DEFAULT_RETRY_DELAYS, Sandbox

DEFAULT_KEY = "sandbox-key"


def _delays(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated seconds, e.g. 1,5,30") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m django_cloudmails.sandbox",
        description="A local CloudMails API simulator (loopback by default).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted API key (repeatable; default {DEFAULT_KEY!r})",
    )
    parser.add_argument(
        "--verified-sender",
        action="append",
        dest="verified_senders",
        metavar="ADDR",
        help="a verified sender or @domain (repeatable; default: all)",
    )
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-signing-secret", metavar="WHSEC")
    parser.add_argument(
        "--webhook-retry-delays",
        type=_delays,
        metavar="S,S,...",
        default=DEFAULT_RETRY_DELAYS,
    )
    parser.add_argument(
        "--rate-limit", type=float, metavar="N", help="requests per second per API key"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="share of API requests answered with 500",
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="S")
    parser.add_argument(
        "--webhook-drop-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="share of webhook events never delivered at all",
    )
    parser.add_argument("--event-delay", type=float, default=0.0, metavar="S")
    parser.add_argument(
        "--rich-events",
        action="store_true",
        help="add bounce_type, bounce_reason and url to webhook events "
        "(default: only the API reference's fields)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--keep-requests",
        type=int,
        default=10000,
        metavar="N",
        help="how many received requests to remember (default 10000)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sandbox = Sandbox(
        api_key=args.api_keys or DEFAULT_KEY,
        verified_senders=args.verified_senders,
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_signing_secret=args.webhook_signing_secret,
        webhook_retry_delays=args.webhook_retry_delays,
        event_delay=args.event_delay,
        rich_events=args.rich_events,
        rate_limit=args.rate_limit,
        seed=args.seed,
        keep_requests=args.keep_requests,
        verbose=args.verbose,
    )
    sandbox.faults.error_rate = args.fault_rate
    sandbox.faults.latency = args.latency
    sandbox.faults.webhook_drop_rate = args.webhook_drop_rate
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox.start()
    # Secrets the user gave are never echoed; only the sandbox's own defaults are shown.
    key_note = "" if args.api_keys else f"; API key {DEFAULT_KEY!r}"
    secret_note = (
        ""
        if args.webhook_signing_secret
        else f"; webhook signing secret {sandbox.webhook_signing_secret}"
    )
    print(f"CloudMails sandbox at {sandbox.url}{key_note}{secret_note}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
