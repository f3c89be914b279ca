"""Logging helpers shared by every module.

Phone numbers and user ids appear in logs only through ``hashed``: stable within a
deployment (so an operator can follow one user across lines), useless to anyone reading the
log without the salt. Phone numbers have little entropy (a country's numbers are a few
billion at most), so an unkeyed or publicly keyed hash is reversed by trying them all; the
key is a secret salt: ``WA_AGENTD_LOG_SALT`` (environment or credential) when the operator
sets one — the same on every host behind one load balancer gives the same hashes everywhere
— else a random salt the daemon creates once in its state directory (``log-salt``, mode
0600), so a restart keeps the hashes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

SALT_FILE = "log-salt"


def salt_key(salt: str) -> bytes:
    """The blake2s key for ``salt``: any length in, 32 bytes out (blake2s takes at most 32,
    and cutting a longer salt short would silently drop what makes it secret)."""
    return hashlib.blake2s(salt.encode(), digest_size=32, person=b"wa-salt").digest()


# Until the daemon chose its salt (``use_salt``): the environment's, else a random one, so
# that no hash is ever keyed with a value anyone could know.
_key = salt_key(os.environ.get("WA_AGENTD_LOG_SALT") or secrets.token_hex(32))


def hashed(value: str, *, key: bytes | None = None) -> str:
    """A short, stable, non-reversible tag for a phone number or user id."""
    digest = hashlib.blake2s(
        value.encode(), key=_key if key is None else key, digest_size=5
    ).hexdigest()
    return "u:" + digest


def message_tag(message_id: str) -> str:
    """A message id as log lines show it: hashed like users ("m:" + 10 hex digits). A Meta
    wamid is base64 of the sender's phone number, so the raw id never goes to the log."""
    digest = hashlib.blake2s(
        message_id.encode("utf-8", "surrogatepass"), key=_key, digest_size=5
    ).hexdigest()
    return "m:" + digest


def use_salt(salt: str) -> None:
    """Key every later ``hashed`` with ``salt`` (the daemon calls this once, at start)."""
    global _key
    _key = salt_key(salt)


class SaltMissing(Exception):
    """No configured salt and no salt file (and we were told not to create one)."""


def load_salt(state_dir: Path, configured: str = "", *, create: bool = True) -> str:
    """The log salt: ``configured`` (WA_AGENTD_LOG_SALT) when set, else the one kept in
    ``state_dir``, created on first use (32 random bytes, hex, mode 0600)."""
    if configured.strip():
        return configured.strip()
    path = state_dir / SALT_FILE
    try:
        salt = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        salt = ""
    if salt:
        return salt
    if not create:
        raise SaltMissing(f"{path} does not exist yet (the daemon creates it at its first start)")
    if path.exists():  # emptied by hand: a new salt, and hashes change from here on
        log.warning("log salt file %s was empty: a new salt, user hashes change", path)
        path.unlink()
    return _create_salt(path)


def _create_salt(path: Path) -> str:
    """Write a new salt to ``path`` unless another process got there first; return the salt
    in the file. Written to a private temporary name and hard-linked into place: the link
    fails if ``path`` exists, and a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    salt = secrets.token_hex(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 whatever the umask
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(salt + "\n")
            f.flush()
            os.fsync(f.fileno())  # a power cut must not leave an empty salt behind
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text(encoding="ascii").strip()
    finally:
        tmp.unlink(missing_ok=True)
    log.info("created the log salt %s (user hashes are keyed with it)", path)
    return salt


# --------------------------------------------------------------------------- turn ids

# The id of the turn the current task works for. Set by the turn; trio gives every task a
# copy of its parent's context, so the tasks a turn starts carry the id too, and every log
# line of one turn can be found with `journalctl -g 'turn=<id>'`.
current_turn: ContextVar[str] = ContextVar("wa_agentd_turn", default="")


class _TurnIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        turn = current_turn.get()
        record.turn = f"turn={turn} " if turn else ""
        return True


# --------------------------------------------------------------------------- set-up

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
JOURNAL_FORMAT = "%(name)s: %(turn)s%(message)s"
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(turn)s%(message)s"


def priority(levelno: int) -> int:
    """syslog priority of a logging level (journald reads it from a <N> line prefix)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>`` on every line, so a multi-line traceback keeps its priority in the journal.

    journald strips the prefix and files the line at priority N (SyslogLevelPrefix=, on by
    default); ``journalctl -p warning`` then shows exactly the problems. Through stderr each
    line becomes an entry of its own, so the continuation lines (a traceback, a message with
    a newline) also repeat the logger name and ``turn=<id>``: ``journalctl -g 'turn=<id>'``
    then finds the whole traceback, not only its first line.
    """

    def __init__(self, fmt: str = JOURNAL_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        first, *rest = super().format(record).splitlines() or [""]
        head = f"{prefix}{record.name}: {getattr(record, 'turn', '')}"
        return "\n".join([prefix + first, *(head + "  " + line for line in rest)])


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    """One line per event on stderr. Under journald no timestamps (it adds its own)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_TurnIdFilter())
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Per-request access lines would drown the turn summaries; hypercorn errors still show.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
