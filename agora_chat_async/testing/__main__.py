"""``python -m agora_chat_async.testing``: serve the emulator on a local port."""

from __future__ import annotations

import argparse
import sys

from .._rates import RateLimits, scaled_limits
from ._faults import Faults
from ._network import LOOPBACK, Network


def _faults(text: str) -> Faults | None:
    """``refuse_503=0.05,latency=0.1`` as :class:`Faults`; ``None`` for an empty string."""
    if not text:
        return None
    fields = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not NAME=VALUE")
        fields[name.strip()] = float(value)
    return Faults(**fields)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m agora_chat_async.testing",
        description="Serve the bundled Agora Chat emulator on a local port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    parser.add_argument("--org", default="test-org", help="org name (default test-org)")
    parser.add_argument("--app", default="test-app", help="app name (default test-app)")
    parser.add_argument(
        "--token",
        action="append",
        default=None,
        help="a static token to accept (repeatable; default test-token)",
    )
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="client credentials to accept (repeatable)",
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="emulated seconds per real second (default 1)"
    )
    parser.add_argument(
        "--policy",
        choices=("sliding", "fixed", "token_bucket"),
        default="sliding",
        help="how quotas are counted (default sliding)",
    )
    parser.add_argument("--unlimited", action="store_true", help="enforce no quota")
    parser.add_argument(
        "--quota-factor",
        type=float,
        default=1.0,
        help="enforce this fraction of every documented quota (0.8: 20%% less; default 1)",
    )
    parser.add_argument(
        "--quota-refusal",
        choices=("403", "429"),
        default="403",
        help="how an exceeded message quota is refused: 403 'message send reach limit' "
        "(default) or 429 reach_limit (the reference pages do not settle which)",
    )
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="count deliveries without keeping them (for very large runs)",
    )
    parser.add_argument(
        "--faults",
        default="",
        metavar="NAME=VALUE,...",
        help="faults on every endpoint, as Faults fields: refuse_503=0.05,drop_connection=0.01",
    )
    parser.add_argument(
        "--round-trip",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a network of this round trip between clients and the emulator: half of it "
        "before each request is counted, half before its answer leaves (default 0)",
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.1,
        metavar="FRACTION",
        help="with --round-trip: each way waits up to this fraction of the round trip more, "
        "drawn uniformly (default 0.1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        faults = _faults(args.faults)
    except (TypeError, ValueError) as exc:
        parser.error(f"--faults: {exc}")
    network = LOOPBACK
    if args.round_trip:
        try:
            network = Network.round_trip(args.round_trip, jitter=args.jitter)
        except ValueError as exc:
            parser.error(f"--round-trip: {exc}")

    try:
        import uvicorn
    except ImportError:
        sys.stderr.write("serving needs uvicorn: pip install 'agora-chat-async[testing]'\n")
        return 2
    from ._emulator import CALL_RATE_REFUSAL, Emulator

    clients = dict(item.split(":", 1) for item in args.client)
    limits = None if args.unlimited else scaled_limits(RateLimits(), args.quota_factor)
    emulator = Emulator(
        org_name=args.org,
        app_name=args.app,
        tokens=args.token or ["test-token"],
        clients=clients,
        rate_limits=limits,
        policy=args.policy,
        time_scale=args.time_scale,
        seed=args.seed,
        record_deliveries=not args.no_record,
        faults={"*": faults} if faults is not None else None,
        network=network,
        refusals=(
            dict.fromkeys(("users", "groups", "rooms"), CALL_RATE_REFUSAL)
            if args.quota_refusal == "429"
            else None
        ),
    )
    sys.stdout.write(_banner(args, clients))
    sys.stdout.flush()
    uvicorn.run(emulator, host=args.host, port=args.port, log_level="warning")
    return 0


def _banner(args: argparse.Namespace, clients: dict[str, str]) -> str:
    """What a user needs to point a client at the emulator: its address, names and
    credentials (test credentials it was given, printed on purpose), as the CLI's variables."""
    url = f"http://{args.host}:{args.port}"
    quotas = (
        "none enforced"
        if args.unlimited
        else f"{args.quota_factor:.0%} of the documented ones, counted {args.policy}"
    )
    tokens = args.token or ["test-token"]
    lines = [
        f"Agora Chat emulator at {url} (Ctrl+C stops it)",
        f"  inbox: {url}/ (what the app sent, live, in a browser)",
        f"  org {args.org!r}, app {args.app!r}; quotas: {quotas}",
        f"  tokens: {', '.join(tokens)}",
    ]
    if clients:
        lines.append("  client credentials: " + ", ".join(f"{i}:{s}" for i, s in clients.items()))
    if args.round_trip:
        lines.append(f"  network: {args.round_trip:g} s round trip, jitter {args.jitter:g}")
    lines += [
        "For agora-chat (or your own code):",
        f"  export AGORA_CHAT_BASE_URL={url} AGORA_CHAT_ORG={args.org} "
        f"AGORA_CHAT_APP={args.app} AGORA_CHAT_TOKEN={tokens[0]}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
