"""`python -m gladly_sync.simulator`: serve a seeded Gladly org until SIGINT or SIGTERM.

The first line on stdout is the base URL (clients append /api/v1); details go to stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import timedelta

from gladly_sync.simulator.organization import (
    DEFAULT_API_EMAIL,
    DEFAULT_API_TOKEN,
    NOPERM_EMAIL,
    NOPERM_TOKEN,
)
from gladly_sync.simulator.server import Simulator
from gladly_sync.simulator.world import Quirks


def _items_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(",")
    low_value = int(low)
    high_value = int(high or low)
    if not 1 <= low_value <= high_value:
        raise argparse.ArgumentTypeError("expected MIN,MAX with 1 <= MIN <= MAX")
    return low_value, high_value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gladly_sync.simulator",
                                     description="Serve a simulated Gladly REST API on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--items-per-conversation", type=_items_range, default=(2, 8),
                        metavar="MIN,MAX")
    parser.add_argument("--history-days", type=int, default=10)
    parser.add_argument("--rate-limit", type=float, default=None, metavar="PER_SECOND",
                        help="requests per second per HTTP method (default: unlimited)")
    parser.add_argument("--api-email", default=DEFAULT_API_EMAIL)
    parser.add_argument("--api-token", default=DEFAULT_API_TOKEN)
    parser.add_argument("--event-lateness", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS",
                        help="Gladly's clock minus the host's (timestamps and Date header)")
    parser.add_argument("--no-quirks", action="store_true",
                        help="serve only schema-valid items (no documented quirks)")
    parser.add_argument("--bulk-export-items", type=int, default=0, metavar="N",
                        help="also create a bulk export job with N synthetic items")
    parser.add_argument("--bulk-export-conversations", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quirks = Quirks(False, False, False) if args.no_quirks else None
    simulator = Simulator(seed=args.seed, customers=args.customers,
                          conversations=args.conversations,
                          items_per_conversation=args.items_per_conversation,
                          history_days=args.history_days, rate_limit_per_second=args.rate_limit,
                          api_email=args.api_email, api_token=args.api_token, host=args.host,
                          port=args.port, quirks=quirks,
                          event_lateness_seconds=args.event_lateness,
                          clock_offset=timedelta(seconds=args.clock_offset))
    if args.bulk_export_items:
        job = simulator.world.create_bulk_export_job(items=args.bulk_export_items,
                                                     conversations=args.bulk_export_conversations)
        print(f"bulk export job: {job['id']}", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    simulator.start()
    print(simulator.base_url, flush=True)
    print(f"api user: {args.api_email} / {args.api_token}; no permission: "
          f"{NOPERM_EMAIL} / {NOPERM_TOKEN}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
