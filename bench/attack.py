"""Attack: what hostile HTTP clients cost the daemon before anyone's signature is checked.

    .venv/bin/python -m bench.attack [--scenario NAME ...] [--bodies 40] [--body-mib 3]
                                     [--idle 8300] [--h2c 200] [--hold 40]
                                     [--set section.key=VALUE ...] [--daemon-src DIR]
                                     [--out bench/out]

Each scenario starts ``wa-agentd serve`` as a child process (against the simulators, on
loopback), measures its VmRSS and open descriptors (from /proc) once it has started and
answered one signed webhook, runs one attack from this process, and reports what the daemon
held and answered meanwhile:

- ``bodies``: ``--bodies`` unsigned POSTs to the webhook, each a chunked ``--body-mib`` MiB
  body that then stalls (the client keeps the connection and sends nothing more).
- ``forged_bodies``: the same with a well-formed, wrong ``X-Hub-Signature-256``: the
  signature can only be checked once the body is in.
- ``twilio_bodies``: the same against the Twilio provider (a well-formed, wrong
  ``X-Twilio-Signature``).
- ``idle``: ``--idle`` TCP connections that send nothing and reconnect as soon as the daemon
  drops them (idle ones are dropped after keep_alive_timeout), against a daemon whose
  RLIMIT_NOFILE is the unit's ``LimitNOFILE`` (8192); meanwhile a signed webhook is posted:
  its status and how long it took.
- ``h2c``: ``--h2c`` HTTP/2 connections (prior knowledge, no TLS) that send a PING every
  second for ``--hold`` seconds (longer than every server timeout), and how many are open at
  the end; and a signed webhook meanwhile.
- ``h2c_flood``: ``--idle`` of those PINGing h2c connections, reconnecting when dropped,
  against the unit's descriptor limit, and a signed webhook meanwhile.
- ``h2_connect``: one, then 100, HTTP/2 CONNECT streams without ``:path``: the lines the
  daemon logs for them.
- ``framing``: a request with both Content-Length and Transfer-Encoding smuggling a second
  request behind its body, and one whose Transfer-Encoding is obs-folded: what came back.
- ``admin``: ``/metrics`` and ``/readyz`` asked on the public (webhook) listener.
- ``gzip``: the media download of a 400 KB gzip bomb (~400 MB inflated) through
  ``daemon.channels.media.download`` in a fresh child process: its peak RSS growth.

``--daemon-src DIR`` runs another tree's daemon (e.g. ``git archive main | tar -x -C DIR``)
for a before/after comparison; the harness (simulators, clients) is always this tree's.
``--set server.http2=true`` changes one config key of the daemon under attack.

Output: a table on stdout and ``<out>/attack.json``. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import httpx
import trio

from daemon.sim.stack import DaemonProcess, Sims, WhatsAppSide, open_sims, spawn_daemon

OUT = Path(__file__).resolve().parent / "out"
MIB = 1024 * 1024
UNIT_NOFILE = 8192  # systemd/wa-agentd.service LimitNOFILE
SETTLE = 2.0  # seconds of sampling once an attack is in place (the peak is kept)
CHUNK = 64 * 1024


# --------------------------------------------------------------------------- the daemon


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Target:
    daemon: DaemonProcess
    sims: Sims
    side: WhatsAppSide
    client: httpx.AsyncClient
    host: str
    port: int
    baseline_mib: float = 0.0
    baseline_fds: int = 0

    @property
    def pid(self) -> int:
        return self.daemon.process.pid

    def log_lines(self) -> int:
        return self.daemon.log.count(b"\n")

    async def peak(self, seconds: float = SETTLE) -> tuple[float, int]:
        """Highest RSS (MiB above the baseline) and descriptor count over ``seconds``."""
        rss, fds = 0.0, 0
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            rss = max(rss, rss_mib(self.pid) - self.baseline_mib)
            fds = max(fds, open_fds(self.pid))
            await trio.sleep(0.1)
        return round(rss, 1), fds

    async def signed_webhook(self) -> dict[str, Any]:
        """Three signed text webhooks, one after the other, each on a fresh connection (as a
        provider's delivery is; a pooled one the daemon closed meanwhile would fail on the
        client's side): each one's status (or "timeout" after 20 s, or the error) and the
        seconds it took."""
        outcomes: list[Any] = []
        seconds: list[float] = []
        for n in range(3):
            start = time.monotonic()
            try:
                with trio.fail_after(20):
                    async with httpx.AsyncClient(timeout=20) as fresh:
                        side = self.daemon.whatsapp(self.sims, fresh)
                        _, response = await side.send_text(f"1555000999{n}", "still there?")
                outcomes.append(response.status_code)
            except trio.TooSlowError:
                outcomes.append("timeout")
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)
            seconds.append(round(time.monotonic() - start, 2))
        return {"status": outcomes, "seconds": seconds}


def _parse_sets(sets: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for item in sets:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        overrides.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    return overrides


async def with_target(
    args: argparse.Namespace,
    attack: Callable[[Target], Awaitable[dict[str, Any]]],
    *,
    provider: str = "meta",
    nofile: int | None = None,
) -> dict[str, Any]:
    env = {"PYTHONPATH": args.daemon_src} if args.daemon_src else None
    overrides = _parse_sets(args.set)
    with tempfile.TemporaryDirectory(prefix="wa-attack-") as scratch:
        async with (
            open_sims() as sims,
            spawn_daemon(sims, Path(scratch), provider=provider, env=env, **overrides) as daemon,
            httpx.AsyncClient(timeout=30) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(daemon.drain_log)
            if nofile:
                resource.prlimit(daemon.process.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            side = daemon.whatsapp(sims, client)
            target = Target(daemon, sims, side, client, host, int(port))
            await _warm_up(target, sims)
            target.baseline_mib = rss_mib(target.pid)
            target.baseline_fds = open_fds(target.pid)
            result = await attack(target)
            result = {
                "baseline_rss_mib": round(target.baseline_mib, 1),
                "baseline_fds": target.baseline_fds,
                **result,
            }
            nursery.cancel_scope.cancel()
    return result


async def _warm_up(target: Target, sims: Sims) -> None:
    """One full turn, so every pool, cache and code path the attack meets exists already."""
    with trio.fail_after(20):
        _, response = await target.side.send_text("15550000001", "hello")
        assert response.status_code == 200, response.text
        before = len(target.side.delivered())
        while len(target.side.delivered()) == before:  # noqa: ASYNC110 (another process)
            await trio.sleep(0.05)
    await trio.sleep(0.5)


# --------------------------------------------------------------------------- raw clients


@dataclass
class Raw:
    """What one raw client saw: the bytes that came back and whether the server closed."""

    received: bytes = b""
    closed: bool = False

    @property
    def status(self) -> int | None:
        match = re.match(rb"HTTP/1\.1 (\d{3}) ", self.received)
        return int(match.group(1)) if match else None


async def _watch(stream: trio.SocketStream, raw: Raw) -> None:
    try:
        while data := await stream.receive_some(65536):
            raw.received += data
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    raw.closed = True


async def _connect(target: Target, raw: Raw, done: trio.Event) -> trio.SocketStream | None:
    """A connection to the daemon, or None (``raw`` closed, ``done`` set) when refused."""
    try:
        return await trio.open_tcp_stream(target.host, target.port)
    except OSError:
        raw.closed = True
        done.set()
        return None


async def _stalled_body(
    target: Target, raw: Raw, headers: Mapping[str, str], total: int, sent: trio.Event
) -> None:
    """POST a chunked body of ``total`` bytes, then send nothing more, until cancelled."""
    head = (
        "POST /webhook HTTP/1.1\r\nHost: daemon\r\nTransfer-Encoding: chunked\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    chunk = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
    stream = await _connect(target, raw, sent)
    if stream is None:
        return
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(_watch, stream, raw)
        try:
            with trio.move_on_after(15):  # a daemon that stops reading stalls us too
                await stream.send_all(head)
                for _ in range(total // CHUNK):
                    if raw.closed:
                        break
                    await stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        sent.set()
        await trio.sleep_forever()


async def _bodies(target: Target, n: int, mib: float, headers: Mapping[str, str]) -> dict[str, Any]:
    raws = [Raw() for _ in range(n)]
    async with trio.open_nursery() as nursery:
        events = [trio.Event() for _ in raws]
        for raw, event in zip(raws, events, strict=True):
            nursery.start_soon(_stalled_body, target, raw, headers, int(mib * MIB), event)
        for event in events:
            await event.wait()
        rss, fds = await target.peak()
        webhook = await target.signed_webhook()
        nursery.cancel_scope.cancel()
    statuses: dict[str, int] = {}
    for raw in raws:
        key = str(raw.status or "none")
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "attack": f"{n} stalled chunked bodies of {mib:g} MiB",
        "rss_growth_mib": rss,
        "peak_fds": fds,
        "statuses": statuses,
        "closed_by_daemon": sum(r.closed for r in raws),
        "signed_webhook_meanwhile": webhook,
    }


# --------------------------------------------------------------------------- idle and h2c


async def _idle_slot(target: Target, kind: str, stop: trio.Event, counts: dict[str, int]) -> None:
    """Connect and hold the connection, reconnecting as soon as the daemon drops it. ``tcp``
    sends nothing; ``h2c`` opens HTTP/2 (prior knowledge) and sends a PING every second."""
    while not stop.is_set():
        try:
            stream = await trio.open_tcp_stream(target.host, target.port)
        except OSError:
            counts["connect_failed"] += 1
            await trio.sleep(0.1)
            continue
        counts["connects"] += 1
        raw = Raw()
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(_watch, stream, raw)
            try:
                if kind == "h2c":
                    conn = _h2_client()
                    conn.initiate_connection()
                    await stream.send_all(conn.data_to_send())
                for n in range(10_000):
                    await trio.sleep(1.0)
                    if raw.closed:
                        break
                    if kind == "h2c":
                        conn.ping(n.to_bytes(8, "big"))
                        await stream.send_all(conn.data_to_send())
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            nursery.cancel_scope.cancel()
        if raw.status:
            counts[f"answered_{raw.status}"] = counts.get(f"answered_{raw.status}", 0) + 1


async def _flood(target: Target, n: int, kind: str) -> dict[str, Any]:
    counts = {"connects": 0, "connect_failed": 0}
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_idle_slot, target, kind, stop, counts)
        with trio.move_on_after(10):  # every slot connected (or stuck in the backlog)
            while counts["connects"] + counts["connect_failed"] < n:  # noqa: ASYNC110
                await trio.sleep(0.1)
        rss, fds = await target.peak()
        webhook = await target.signed_webhook()
        stop.set()
        nursery.cancel_scope.cancel()
    what = "idle connections" if kind == "tcp" else "h2c connections sending PINGs"
    return {
        "attack": f"{n} {what}, reconnecting when dropped, daemon RLIMIT_NOFILE {UNIT_NOFILE}",
        "rss_growth_mib": rss,
        "peak_fds": fds,
        "connects": counts,
        "signed_webhook_meanwhile": webhook,
    }


def _h2_client() -> h2.connection.H2Connection:
    return h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
    )


async def _h2c_pinger(target: Target, raw: Raw, hold: float, opened: trio.Event) -> None:
    stream = await _connect(target, raw, opened)
    if stream is None:
        return
    conn = _h2_client()
    conn.initiate_connection()
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(_watch, stream, raw)
        try:
            await stream.send_all(conn.data_to_send())
            opened.set()
            with trio.move_on_after(hold):
                for n in range(10_000):
                    await trio.sleep(1.0)
                    if raw.closed:
                        break
                    conn.ping(n.to_bytes(8, "big"))
                    await stream.send_all(conn.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        opened.set()
        await trio.sleep_forever()


async def _h2c(target: Target, n: int, hold: float) -> dict[str, Any]:
    raws = [Raw() for _ in range(n)]
    async with trio.open_nursery() as nursery:
        events = [trio.Event() for _ in raws]
        start = trio.current_time()
        for raw, event in zip(raws, events, strict=True):
            nursery.start_soon(_h2c_pinger, target, raw, hold, event)
        for event in events:
            await event.wait()
        rss, fds = await target.peak()
        webhook = await target.signed_webhook()
        await trio.sleep_until(start + hold)
        still_open = sum(not r.closed for r in raws)
        nursery.cancel_scope.cancel()
    return {
        "attack": f"{n} h2c connections sending a PING every second for {hold:g} s",
        "rss_growth_mib": rss,
        "peak_fds": fds,
        "open_at_the_end": still_open,
        "http1_answers": sum(r.status is not None for r in raws),
        "signed_webhook_meanwhile": webhook,
    }


async def _h2_connect(target: Target) -> dict[str, Any]:
    async def one_connection(streams: int) -> None:
        async with await trio.open_tcp_stream(target.host, target.port) as stream:
            conn = _h2_client()
            conn.initiate_connection()
            for n in range(streams):
                conn.send_headers(2 * n + 1, [(b":method", b"CONNECT"), (b":authority", b"daemon")])
            raw = Raw()
            with trio.move_on_after(2):
                await stream.send_all(conn.data_to_send())
                await _watch(stream, raw)

    before = target.log_lines()
    await one_connection(1)
    await trio.sleep(1)
    one = target.log_lines() - before
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(one_connection, 1)
    await trio.sleep(1)
    hundred = target.log_lines() - before - one
    return {
        "attack": "HTTP/2 CONNECT without :path, once and then on 100 connections",
        "log_lines_for_one": one,
        "log_lines_for_100": hundred,
        "signed_webhook_after": await target.signed_webhook(),
    }


# --------------------------------------------------------------------------- framing, admin


async def _exchange(target: Target, data: bytes, wait: float = 2.0) -> Raw:
    raw = Raw()
    async with await trio.open_tcp_stream(target.host, target.port) as stream:
        await stream.send_all(data)
        with trio.move_on_after(wait):
            await _watch(stream, raw)
    return raw


async def _framing(target: Target) -> dict[str, Any]:
    smuggle = (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: daemon\r\n\r\n"
    )
    folded = (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"
    )
    results = {}
    for name, data in (("cl_and_te_smuggling", smuggle), ("obs_folded_te", folded)):
        raw = await _exchange(target, data)
        results[name] = {
            "statuses": [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw.received)],
            "closed_by_daemon": raw.closed,
        }
    return {"attack": "request framing", **results}


async def _admin(target: Target) -> dict[str, Any]:
    out: dict[str, Any] = {"attack": "admin routes on the public listener"}
    for path in ("/metrics", "/readyz", "/healthz"):
        response = await target.client.get(target.daemon.url + path)
        out[path] = {"status": response.status_code, "bytes": len(response.content)}
    return out


# --------------------------------------------------------------------------- gzip bomb

BOMB_INFLATED = 400 * MIB


def _bomb() -> bytes:
    """A gzip stream of BOMB_INFLATED zero bytes, compressed a MiB at a time: the process's
    peak RSS must not already hold the inflated size before the download starts."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    zeros = bytes(MIB)
    parts = [packer.compress(zeros) for _ in range(BOMB_INFLATED // MIB)]
    return b"".join(parts) + packer.flush()


async def _gzip_child() -> dict[str, Any]:
    """In this (fresh) process: serve a gzip bomb on loopback and download it the way the
    daemon downloads a voice note (daemon.channels.media.download, 16 MiB cap)."""
    from daemon.channels import media
    from daemon.errors import UpstreamError, UpstreamRejected

    bomb = _bomb()

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                data = await stream.receive_some(65536)
                if not data:
                    return
                request += data
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nContent-Encoding: gzip\r\n"
                f"Content-Length: {len(bomb)}\r\n\r\n"
            ).encode()
            server.append(request)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(head + bomb)

    server: list[bytes] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        outcome = "downloaded"
        size = 0

        def refuse(status: int, body: bytes) -> UpstreamError:
            return UpstreamRejected("bench", f"{status}", status=status)

        async with httpx.AsyncClient() as http:
            try:
                data = await media.download(
                    http,
                    f"http://127.0.0.1:{port}/voice.ogg",
                    upstream="bench",
                    hosts=["127.0.0.1", f"127.0.0.1:{port}"],
                    plain_http=True,
                    max_bytes=16 * MIB,
                    parse_error=refuse,
                    request=lambda _hop: {},
                )
                size = len(data)
            except UpstreamError as exc:
                outcome = f"refused: {exc}"
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        nursery.cancel_scope.cancel()
    sent = server[0].decode("latin-1").lower() if server else ""
    accept = re.search(r"accept-encoding: *([^\r\n]*)", sent)
    return {
        "attack": f"gzip bomb: {len(bomb) // 1024} KB on the wire, {BOMB_INFLATED // MIB} MiB "
        "inflated, as a voice note",
        "peak_rss_growth_mib": round(after - before, 1),
        "outcome": outcome,
        "bytes_returned": size,
        "accept_encoding_sent": accept.group(1) if accept else None,
        "daemon_module": media.__file__,
    }


def _gzip(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    if args.daemon_src:
        env["PYTHONPATH"] = args.daemon_src
    # Run as a script from a scratch directory: sys.path[0] is then bench/ itself, so
    # ``daemon`` comes from --daemon-src (PYTHONPATH) or else this tree's install.
    with tempfile.TemporaryDirectory(prefix="wa-attack-") as scratch:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--gzip-child"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=scratch,
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- main


def _forged_meta() -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64}


def _forged_twilio() -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": base64.b64encode(bytes(20)).decode(),
    }


SCENARIOS = (
    "bodies",
    "forged_bodies",
    "twilio_bodies",
    "idle",
    "h2c",
    "h2c_flood",
    "h2_connect",
    "framing",
    "admin",
    "gzip",
)


@dataclass
class Report:
    daemon_src: str
    overrides: list[str]
    results: dict[str, Any] = field(default_factory=dict)


Attack = Callable[[Target], Awaitable[dict[str, Any]]]


def _attacks(args: argparse.Namespace) -> dict[str, tuple[Attack, dict[str, Any]]]:
    """Scenario -> (the attack on a started daemon, how to start that daemon)."""
    bodies = partial(_bodies, n=args.bodies, mib=args.body_mib)
    at_the_fd_limit = {"nofile": UNIT_NOFILE}
    return {
        "bodies": (partial(bodies, headers={}), {}),
        "forged_bodies": (partial(bodies, headers=_forged_meta()), {}),
        "twilio_bodies": (partial(bodies, headers=_forged_twilio()), {"provider": "twilio"}),
        "idle": (partial(_flood, n=args.idle, kind="tcp"), at_the_fd_limit),
        "h2c": (partial(_h2c, n=args.h2c, hold=args.hold), {}),
        "h2c_flood": (partial(_flood, n=args.idle, kind="h2c"), at_the_fd_limit),
        "h2_connect": (_h2_connect, {}),
        "framing": (_framing, {}),
        "admin": (_admin, {}),
    }


async def run(args: argparse.Namespace) -> Report:
    report = Report(daemon_src=args.daemon_src or "this tree", overrides=args.set)
    attacks = _attacks(args)
    for name in args.scenario or SCENARIOS:
        print(f"-- {name}", flush=True)
        if name == "gzip":
            result = await trio.to_thread.run_sync(_gzip, args)
        else:
            attack, how = attacks[name]
            result = await with_target(args, attack, **how)
        print(json.dumps(result, indent=2), flush=True)
        report.results[name] = result
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--bodies", type=int, default=40)
    parser.add_argument("--body-mib", type=float, default=3.0)
    parser.add_argument("--idle", type=int, default=8300)
    parser.add_argument("--h2c", type=int, default=200)
    parser.add_argument("--hold", type=float, default=40.0)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--daemon-src", default="", help="run this tree's daemon instead")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--gzip-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gzip_child:
        print(json.dumps(trio.run(_gzip_child)))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * args.idle + args.h2c + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, wanted), hard))
    report = trio.run(run, args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "attack.json"
    (args.out / name).write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"\nwrote {args.out / name}")


if __name__ == "__main__":
    main()
