"""Run the simulated Zendesk as a process (demo, benchmarks).

    python -m zendesk_sim --port 8765 --records 20000 --seed 42 --days 30

Prints one line, ``listening on http://127.0.0.1:PORT``, once it accepts
connections, then serves until SIGTERM or SIGINT and exits 0. Generated records
end ``--end-offset`` seconds before now and start ``--days`` days before that.
An auth flag given as an empty string switches that method off.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from types import FrameType

from zendesk_sim.access.records import AccessSource
from zendesk_sim.audit.generate import SHAPES, generate_records
from zendesk_sim.edge.auth import SimAuth
from zendesk_sim.edge.ratelimit import MODES
from zendesk_sim.simulator import SimulatedZendesk


def _parser() -> argparse.ArgumentParser:
    defaults = SimAuth()
    parser = argparse.ArgumentParser(
        prog="python -m zendesk_sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    add("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    add("--records", type=int, default=20_000, help="generated records (default 20000)")
    add(
        "--shape",
        choices=SHAPES,
        default="bursty",
        help="bursty (default: a busy account's bursts, quiet stretches, out-of-order ids) or even",
    )
    add("--seed", type=int, default=42, help="generation seed (default 42)")
    add("--days", type=float, default=30.0, help="days the records span (default 30)")
    add(
        "--end-offset",
        type=float,
        default=600.0,
        help="seconds before now the records end (default 600)",
    )
    add("--base-url", default="https://example.zendesk.com", help="host in record urls")
    add("--rate-limit", type=int, default=None, help="requests per minute (default unlimited)")
    add("--latency", type=float, default=0.0, help="seconds added to every response")
    add("--jitter", type=float, default=0.0, help="latency varies by up to +/- this (seconds)")
    add(
        "--rate-limit-mode",
        choices=MODES,
        default="burst",
        help="burst: a minute's count may go at once; strict: requests also evenly spaced",
    )
    add(
        "--rate-limit-window",
        type=float,
        default=60.0,
        help="seconds of the window the limit counts in (default 60: Zendesk's minute)",
    )
    add(
        "--min-end-age",
        type=float,
        default=60.0,
        help="refuse created_at end bounds newer than this many seconds (0: off)",
    )
    add("--exclusive-start", action="store_true", help="created_at start bound is exclusive")
    add("--exclusive-end", action="store_true", help="created_at end bound is exclusive")
    add("--email", default=defaults.email, help="account admin email")
    add("--api-token", default=defaults.api_token, help="API token for {email}/token")
    add("--password", default=defaults.password, help="password for {email}")
    add(
        "--oauth-token",
        action="append",
        default=None,
        help="static bearer token (repeatable; default sim-oauth-token)",
    )
    add("--client-id", default=defaults.client_id, help="OAuth client id")
    add("--client-secret", default=defaults.client_secret, help="OAuth client secret")
    add("--token-ttl", type=float, default=defaults.token_ttl, help="issued token lifetime (s)")
    add("--scopes", default=" ".join(defaults.scopes), help="scopes the OAuth client may get")
    add("--non-admin", action="store_true", help="credentials valid but not an admin (403)")
    add(
        "--access-records",
        type=int,
        default=0,
        help="generated access-log records over the last --access-days days (default 0)",
    )
    add(
        "--access-days",
        type=float,
        default=90.0,
        help="how many days back the generated access-log records go (default 90)",
    )
    add(
        "--no-access-addon",
        action="store_true",
        help="the account lacks the ADPP add-on: /api/v2/access_logs answers 403",
    )
    return parser


def _off_if_empty(value: str | None) -> str | None:
    return value or None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tokens = tuple(token for token in (args.oauth_token or ["sim-oauth-token"]) if token)
    auth = SimAuth(
        email=_off_if_empty(args.email),
        api_token=_off_if_empty(args.api_token),
        password=_off_if_empty(args.password),
        oauth_tokens=tokens or None,
        client_id=_off_if_empty(args.client_id),
        client_secret=_off_if_empty(args.client_secret),
        token_ttl=args.token_ttl,
        scopes=tuple(args.scopes.split()),
        admin=not args.non_admin,
    )
    end = datetime.now(UTC) - timedelta(seconds=args.end_offset)
    source = generate_records(
        args.records,
        start=end - timedelta(days=args.days),
        end=end,
        seed=args.seed,
        base_url=args.base_url,
        shape=args.shape,
    )
    sim = SimulatedZendesk(
        source,
        auth=auth,
        rate_limit_per_minute=args.rate_limit,
        latency=args.latency,
        jitter=args.jitter,
        rate_limit_mode=args.rate_limit_mode,
        rate_limit_window=args.rate_limit_window,
        seed=args.seed,
        min_end_age=args.min_end_age,
        inclusive_start=not args.exclusive_start,
        inclusive_end=not args.exclusive_end,
        host=args.host,
        port=args.port,
        access_records=AccessSource(
            args.access_records,
            start=end - timedelta(days=args.access_days),
            end=end,
            seed=args.seed,
        ),
        access_addon=not args.no_access_addon,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with sim:
        print(f"listening on {sim.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
