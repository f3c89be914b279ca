"""Command line: ``wa-agentd serve | check-config | status | hash-user | cache flush | demo``."""

from __future__ import annotations

import argparse
import os
import sys

import trio

from daemon import __version__, config
from daemon.channels import registry
from daemon.observe import logs


def _config_path(args: argparse.Namespace) -> str | None:
    path: str | None = args.config or os.environ.get("WA_AGENTD_CONFIG") or None
    return path


def _load(args: argparse.Namespace, *, ready: bool) -> config.Settings:
    settings = config.load(_config_path(args))
    if ready:
        config.validate_ready(settings)
    return settings


# What a command needs of the config: the ids and secrets to serve ("ready"), values that
# pass their checks ("values"), or nothing (None). A config error exits 2 before it runs.
READY, VALUES = "ready", "values"
CONFIG_ERROR = 2


def cmd_serve(args: argparse.Namespace, settings: config.Settings) -> int:
    from daemon import runtime

    logs.setup(settings.log.level)
    trio.run(runtime.run, settings)
    return 0


def cmd_check_config(args: argparse.Namespace, settings: config.Settings) -> int:
    provider = registry.get(settings.channel.provider)
    for note in provider.notes(settings.providers[provider.section], settings.secrets.get):
        print(f"warning: {note}", file=sys.stderr)
    where = _config_path(args) or "built-in defaults"
    print(
        f"config ok ({where}): provider={settings.channel.provider} "
        f"bind={settings.server.bind} webhook={settings.server.webhook_path} "
        f"admin={settings.admin.bind or settings.server.bind}"
    )
    return 0


def cmd_hash_user(args: argparse.Namespace, settings: config.Settings) -> int:
    """Print the tag a user has in the logs (``user=u:...``), keyed with the daemon's salt."""
    try:
        # Never create the salt here: a file made by root would not be the daemon's.
        salt = logs.load_salt(
            settings.state_dir(), settings.secrets.get("WA_AGENTD_LOG_SALT"), create=False
        )
    except (logs.SaltMissing, OSError) as exc:
        print(f"wa-agentd: no log salt: {exc}", file=sys.stderr)
        return 1
    key = logs.salt_key(salt)
    for user in args.users:
        print(logs.hashed(user.strip().lstrip("+"), key=key))
    return 0


def cmd_cache_flush(args: argparse.Namespace, settings: config.Settings) -> int:
    """Ask the running daemon to flush its caches (POST /admin/cache/flush)."""
    import httpx

    token = settings.secrets.get("WA_AGENTD_ADMIN_TOKEN")
    if not token:
        print("wa-agentd: WA_AGENTD_ADMIN_TOKEN is not set", file=sys.stderr)
        return 2
    bind = args.url or f"http://{settings.admin.bind or settings.server.bind}"
    try:
        response = httpx.post(
            f"{bind.rstrip('/')}/admin/cache/flush",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        print(f"wa-agentd: cannot reach the daemon at {bind}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        # stderr, like every other failure here: scripts read stdout for the counts.
        print(
            f"wa-agentd: flush refused: HTTP {response.status_code} {response.text.strip()}",
            file=sys.stderr,
        )
        return 1
    print(f"caches flushed: {response.json()['flushed']}")
    return 0


def cmd_status(args: argparse.Namespace, settings: config.Settings) -> int:
    """Print what the running daemon is doing (GET /admin/status); see daemon/status.py."""
    from daemon import status

    return status.run(settings, url=args.url, as_json=args.json, out=sys.stdout)


def cmd_demo(args: argparse.Namespace, settings: None) -> int:
    from daemon import demo

    logs.setup("warning" if not args.verbose else "info")
    try:
        trio.run(demo.main, args.bind, args.once, args.provider)
    except KeyboardInterrupt:
        print("\nbye")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wa-agentd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"wa-agentd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", help="config file (default: $WA_AGENTD_CONFIG)")
    serve.set_defaults(func=cmd_serve, needs=READY)

    check = sub.add_parser("check-config", help="validate config and secrets, then exit")
    check.add_argument("--config", help="config file (default: $WA_AGENTD_CONFIG)")
    check.set_defaults(func=cmd_check_config, needs=READY)

    status = sub.add_parser(
        "status",
        help="what the running daemon is doing; exit 0 ready, 1 not ready, 2 local error, "
        "3 no answer",
    )
    status.add_argument("--config", help="config file (default: $WA_AGENTD_CONFIG)")
    status.add_argument("--url", help="the daemon's admin base URL (default: from the config)")
    status.add_argument("--json", action="store_true", help="the status document, for scripts")
    status.set_defaults(func=cmd_status, needs=VALUES)

    hash_user = sub.add_parser(
        "hash-user", help="print the hash a phone number or user id has in the logs"
    )
    hash_user.add_argument("users", nargs="+", help="digits as WhatsApp sends them, or a user id")
    hash_user.add_argument("--config", help="config file (default: $WA_AGENTD_CONFIG)")
    hash_user.set_defaults(func=cmd_hash_user, needs=VALUES)

    cache = sub.add_parser("cache", help="manage the running daemon's caches")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    flush = cache_sub.add_parser("flush", help="empty the response, audio and media caches")
    flush.add_argument("--config", help="config file (default: $WA_AGENTD_CONFIG)")
    flush.add_argument("--url", help="the daemon's admin base URL (default: from the config)")
    flush.set_defaults(func=cmd_cache_flush, needs=VALUES)

    demo = sub.add_parser(
        "demo", help="run against built-in simulators with a scripted conversation"
    )
    demo.add_argument("--bind", default="127.0.0.1:8080", help="webhook listener address")
    demo.add_argument("--once", action="store_true", help="exit after the script")
    demo.add_argument(
        "--provider",
        choices=("meta", "twilio"),  # the providers daemon/sim/ simulates
        default="meta",
        help="the WhatsApp provider",
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="show the daemon's logs")
    demo.set_defaults(func=cmd_demo, needs=None)

    args = parser.parse_args(argv)
    settings = None
    if args.needs is not None:
        try:
            settings = _load(args, ready=args.needs == READY)
        except config.ConfigError as exc:
            print(f"wa-agentd: config error: {exc}", file=sys.stderr)
            return CONFIG_ERROR
    code: int = args.func(args, settings)
    return code


if __name__ == "__main__":
    sys.exit(main())
