"""A real ``redis-server`` (the Debian package) on a loopback port, for the tests.

Each server gets its own temporary directory, append-only file on (``appendfsync
everysec``, Redis' default) and no RDB snapshots. Readiness is read from the server's own
log — it prints "Ready to accept connections" once it listens and has loaded its AOF — so
nothing sleeps or polls. A port is picked by binding port 0 and letting the socket go; if
another process takes it in between, Redis says "Address already in use" and exits, and the
next free port is tried.

``restart()`` keeps the port and the directory, so clients reconnect to the same URL and
the AOF is read back: the AOF-restart tests use it. ``kill()`` is ``kill -9``, ``pause()``
and ``resume()`` are SIGSTOP / SIGCONT (a Redis that hangs rather than refuses).

Tests that need Redis call ``require_redis_server()``: without the binary they skip with a
reason, except under ``CI`` (where .ci/run installs it), where they fail.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

READY = "Ready to accept connections"
START_SECONDS = 20.0  # a cold start on a loaded CI box, AOF replay included
_PORT_TRIES = 5


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it with apt)")
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed (.ci/run installs it with apt)")
        pytest.skip("openssl is not installed: no certificates for the TLS test")
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    # What Python 3.13's default context (VERIFY_X509_STRICT) insists on: key usages on both,
    # CA:TRUE on the CA, key identifiers on the server's.
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]  # fmt: skip
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *curve, *ca_ext, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=wa-test-ca"],
        ["req", *curve, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return TlsFiles(ca, cert, key)


class RedisServer:
    def __init__(
        self,
        binary: str,
        *,
        extra: Sequence[str] = (),
        tls: TlsFiles | None = None,
        config_file: str = "",
        ready: str = READY,
    ) -> None:
        """``config_file`` (a name in ``dir``, written by the caller before ``start``) and
        ``ready`` (the log line that says it serves) are for a sentinel, which needs a
        config file it can rewrite and says "+monitor master" when it is up."""
        self.binary = binary
        self.extra = tuple(extra)
        self.tls = tls
        self.config_file = config_file
        self.ready = ready
        self._tmp = tempfile.TemporaryDirectory(prefix="wa-redis-")
        self.dir = Path(self._tmp.name)
        self.port = 0
        self.log: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on a fresh free port (first start) or on the same port (restart)."""
        assert not self.running
        fixed = self.port != 0
        for _ in range(1 if fixed else _PORT_TRIES):
            port = self.port if fixed else _free_port()
            if self._launch(port):
                self.port = port
                return
        raise RuntimeError("redis-server did not start:\n" + "\n".join(self.log[-20:]))

    def _launch(self, port: int) -> bool:
        listen = ["--port", str(port)]
        if self.tls is not None:  # TLS only: the plain port off
            listen = [
                "--port", "0", "--tls-port", str(port),
                "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
            ]  # fmt: skip
        args = [
            self.binary,
            *([str(self.dir / self.config_file)] if self.config_file else []),
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes",
            "--daemonize", "no",
            "--logfile", "",
            *self.extra,
        ]  # fmt: skip
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert process.stdout is not None
        fd = process.stdout.fileno()
        # Raw reads on the descriptor: a buffered readline could hold the ready line in
        # Python's buffer while select() waits on an empty pipe.
        pending = b""
        deadline = time.monotonic() + START_SECONDS
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    process.kill()
                    process.wait()
                    process.stdout.close()
                    raise RuntimeError(f"redis-server not ready after {START_SECONDS} s")
                chunk = os.read(fd, 65536)
                if not chunk:  # it exited (the port was taken, say)
                    process.wait()
                    process.stdout.close()
                    self.log += pending.decode(errors="replace").splitlines()
                    return False
                *lines, pending = (pending + chunk).split(b"\n")
                self.log += [line.decode(errors="replace") for line in lines]
                if any(self.ready.encode() in line for line in lines):
                    break
        self._process = process
        # Keep reading its log, so a full pipe never blocks the server.
        self._drain = threading.Thread(target=self._read_rest, args=(process,), daemon=True)
        self._drain.start()
        return True

    def _read_rest(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line.decode(errors="replace").rstrip())

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait(timeout=START_SECONDS)
            if self._drain is not None:
                self._drain.join(timeout=START_SECONDS)
            assert self._process.stdout is not None
            self._process.stdout.close()
            self._process = None

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs its AOF and exits."""
        if self.running:
            assert self._process is not None
            self._process.terminate()
        self._reap()

    def kill(self) -> None:
        """``kill -9``: no shutdown work at all."""
        if self.running:
            assert self._process is not None
            self._process.kill()
        self._reap()

    def restart(self, *, hard: bool = False) -> None:
        (self.kill if hard else self.stop)()
        self.start()

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.running:
            self.resume()  # a stopped process takes no SIGTERM until continued
        self.kill()
        self._tmp.cleanup()
