"""Logs for journald: priorities on every line, turn ids, hashed users, a private salt."""

from __future__ import annotations

import io
import logging
import re
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from daemon.channels.base import VoiceNote
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, Media, User
from daemon.observe import logs
from daemon.observe.logs import JournalFormatter, current_turn, hashed, load_salt
from daemon.turn import TurnReport
from tests.unit.turn.fakes import FakeAgent, FakeChannel, make_turn

NUMBER = "16505551234"


@contextmanager
def daemon_logs(monkeypatch: pytest.MonkeyPatch, *, journald: bool) -> Iterator[io.StringIO]:
    """The daemon's real log set-up, under systemd (JOURNAL_STREAM set) or not, into a
    buffer; the root logger's handlers (pytest's among them) are put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    if journald:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    logs.setup("info", stream=out)
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    with daemon_logs(monkeypatch, journald=True) as out:
        yield out


def record(level: int, message: str, *, exc: bool = False, name: str = "daemon.x") -> str:
    """``message`` as the JournalFormatter writes it (with a live traceback when ``exc``)."""
    formatter = JournalFormatter()
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord(name, level, __file__, 1, message, None, exc_info)
    rec.turn = "turn=abcd1234 "
    return formatter.format(rec)


# --------------------------------------------------------------------------- the formatter


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<2>"),
        (25, "<6>"),  # custom levels fall to the level below them
        (35, "<4>"),
    ],
)
def test_each_level_gets_its_syslog_priority(level: int, prefix: str) -> None:
    assert record(level, "hello") == f"{prefix}daemon.x: turn=abcd1234 hello"


def test_every_line_of_a_traceback_carries_the_priority_logger_and_turn() -> None:
    text = record(logging.ERROR, "turn failed", exc=True)
    lines = text.splitlines()
    assert lines[0] == "<3>daemon.x: turn=abcd1234 turn failed"
    assert len(lines) >= 4  # message, "Traceback ...", a frame or two, the exception
    assert all(line.startswith("<3>daemon.x: turn=abcd1234 ") for line in lines), text
    assert lines[1].endswith("Traceback (most recent call last):")
    assert lines[-1].endswith("ValueError: boom")


def test_a_message_with_newlines_stays_one_line() -> None:
    # A line break in a message (a provider's error text, a header a client sent) must not
    # start a journal entry of its own: it is written as an escape.
    text = record(logging.WARNING, "first\nsecond\n\nfourth")
    assert text == "<4>daemon.x: turn=abcd1234 first\\nsecond\\n\\nfourth"


def test_no_timestamp_under_journald_and_one_outside(
    journal: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logging.getLogger("daemon.y").warning("under journald")
    assert journal.getvalue() == "<4>daemon.y: under journald\n"
    monkeypatch.delenv("JOURNAL_STREAM")
    plain = io.StringIO()
    logs.setup("info", stream=plain)
    logging.getLogger("daemon.y").warning("in a terminal")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING daemon\.y: in a terminal\n",
        plain.getvalue(),
    )


def test_the_level_threshold_applies(journal: io.StringIO) -> None:
    logs.setup("warning", stream=journal)
    logging.getLogger("daemon.y").info("quiet")
    logging.getLogger("daemon.y").error("loud")
    assert journal.getvalue() == "<3>daemon.y: loud\n"


# --------------------------------------------------------------------------- a whole turn


@dataclass
class ChattyChannel(FakeChannel):
    """Logs from the turn's background tasks (the read receipt, the voice note)."""

    async def acknowledge(self, message: Inbound) -> None:
        logging.getLogger("daemon.channels.fake").info("read receipt sent")
        await super().acknowledge(message)

    async def prepare_voice(self, ogg_opus: bytes, *, audio_key: str = "") -> VoiceNote:
        logging.getLogger("daemon.channels.fake").info("voice note uploaded")
        return await super().prepare_voice(ogg_opus, audio_key=audio_key)


@dataclass
class ChattyAgent(FakeAgent):
    async def prepare(self, user_key: str) -> None:  # a task of its own (the pre-warm)
        logging.getLogger("daemon.agentforce.fake").warning("session start was slow")
        await super().prepare(user_key)


def voice_note() -> Inbound:
    return Inbound(
        "wamid.v1", User(NUMBER, "+" + NUMBER), Kind.VOICE, media=Media("m1", "audio/ogg")
    )


async def test_every_line_a_turn_logs_carries_its_turn_id(journal: io.StringIO) -> None:
    reports: list[TurnReport] = []
    with trio.fail_after(10):
        await make_turn(ChattyChannel(), ChattyAgent(), reports=reports).run(voice_note())
    [report] = reports
    lines = journal.getvalue().splitlines()
    # What the fakes logged from the turn's own tasks, and the summary, at least.
    assert len(lines) >= 4, lines
    assert all(f"turn={report.turn_id} " in line for line in lines), lines
    assert current_turn.get() == ""  # and nothing leaks out of the turn
    summary = lines[-1]
    assert summary.startswith(f"<6>daemon.turn: turn={report.turn_id} done ")
    assert "outcome=answered" in summary
    assert f"user={hashed(NUMBER)} " in summary
    assert NUMBER not in journal.getvalue()


@pytest.mark.parametrize(
    ("reply", "outcome", "prefix"),
    [
        ((AgentMessage("Inform", "Hi"),), "answered", "<6>"),
        # A hand-over to a person is the business working as intended, not a problem:
        # `journalctl -p warning` must not list it.
        (
            (AgentMessage("Inform", "A colleague will call"), AgentMessage("Escalate", "")),
            "escalated",
            "<6>",
        ),
        ((AgentMessage("Failure", "Could not do it"),), "agent_failure", "<4>"),
        ((), "agent_failure", "<4>"),
    ],
)
async def test_the_summary_priority_follows_the_outcome(
    journal: io.StringIO, reply: tuple[AgentMessage, ...], outcome: str, prefix: str
) -> None:
    text = Inbound("wamid.t1", User(NUMBER, "+" + NUMBER), Kind.TEXT, text="hello there")
    with trio.fail_after(10):
        report = await make_turn(FakeChannel(), FakeAgent(reply=AgentReply(reply))).run(text)
    assert report.outcome == outcome
    [summary] = [line for line in journal.getvalue().splitlines() if " done " in line]
    assert summary.startswith(f"{prefix}daemon.turn: turn={report.turn_id} done ")
    assert "hello there" not in journal.getvalue()  # the user's words: never at info


async def test_an_agent_that_is_down_is_a_warning(journal: io.StringIO) -> None:
    from daemon.errors import UpstreamUnavailable

    agent = FakeAgent(error=UpstreamUnavailable("agentforce", "HTTP 503", status=503))
    with trio.fail_after(10):
        report = await make_turn(FakeChannel(), agent).run(voice_note())
    assert report.outcome == "agent_down"
    [summary] = [line for line in journal.getvalue().splitlines() if " done " in line]
    assert summary.startswith(f"<4>daemon.turn: turn={report.turn_id} done ")


async def test_a_bug_in_a_turn_is_an_error_traceback_every_line_of_it(
    journal: io.StringIO,
) -> None:
    channel = FakeChannel(fail_text=RuntimeError("a bug"))
    with trio.fail_after(10):
        report = await make_turn(channel).run(voice_note())
    assert report.outcome == "error"
    lines = journal.getvalue().splitlines()
    traceback = [line for line in lines if line.startswith("<3>")]
    assert any("Traceback (most recent call last):" in line for line in traceback)
    assert any(line.endswith("RuntimeError: a bug") for line in traceback)
    # Every line that is not the summary (<4>) belongs to the traceback (<3>), and all of
    # them carry the turn id: `journalctl -g turn=<id>` shows the whole traceback.
    assert all(line.startswith(("<3>", "<4>")) for line in lines), lines
    assert all(f"turn={report.turn_id} " in line for line in lines), lines


# --------------------------------------------------------------------------- hashes and salt


def test_hashed_is_stable_short_and_keyed() -> None:
    key_a, key_b = logs.salt_key("a"), logs.salt_key("b")
    assert hashed(NUMBER, key=key_a) == hashed(NUMBER, key=key_a)
    assert re.fullmatch(r"u:[0-9a-f]{10}", hashed(NUMBER, key=key_a))
    assert hashed(NUMBER, key=key_a) != hashed(NUMBER, key=key_b)
    assert hashed(NUMBER, key=key_a) != hashed("16505551235", key=key_a)


def test_the_default_key_is_not_public() -> None:
    # The old default keyed every deployment's hashes with "wa-agentd": anyone could hash
    # all numbers of a country and read the logs back. No known key hashes like the daemon.
    for public in ("wa-agentd", ""):
        assert hashed(NUMBER) != hashed(NUMBER, key=logs.salt_key(public))
        assert hashed(NUMBER) != hashed(NUMBER, key=public.encode()[:32])


def test_a_long_salt_counts_in_full() -> None:
    # blake2s keys are at most 32 bytes; a salt is hashed down, not cut short.
    same_start = "x" * 32
    assert logs.salt_key(same_start + "1") != logs.salt_key(same_start + "2")


def test_the_salt_is_created_once_private_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_salt(state)
    path = state / logs.SALT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and int(first, 16) >= 0  # 32 random bytes, hex
    assert load_salt(state) == first  # a restart: the same salt, the same hashes
    assert [p.name for p in state.iterdir()] == [logs.SALT_FILE]  # no temporary left


def test_two_daemons_on_one_state_dir_hash_alike_and_other_dirs_differ(tmp_path: Path) -> None:
    one = logs.salt_key(load_salt(tmp_path / "host-a"))
    same = logs.salt_key(load_salt(tmp_path / "host-a"))
    other = logs.salt_key(load_salt(tmp_path / "host-b"))
    assert hashed(NUMBER, key=one) == hashed(NUMBER, key=same)
    assert hashed(NUMBER, key=one) != hashed(NUMBER, key=other)


def test_a_configured_salt_wins_and_writes_nothing(tmp_path: Path) -> None:
    # WA_AGENTD_LOG_SALT, from the environment or a credential: every host the same.
    assert load_salt(tmp_path / "a", "  shared-secret\n") == "shared-secret"
    assert load_salt(tmp_path / "b", "shared-secret") == "shared-secret"
    assert not (tmp_path / "a").exists()


def test_a_salt_file_that_lost_its_content_is_replaced(tmp_path: Path) -> None:
    (tmp_path / logs.SALT_FILE).write_text("")
    salt = load_salt(tmp_path)
    assert len(salt) == 64
    assert (tmp_path / logs.SALT_FILE).read_text().strip() == salt


def test_without_create_a_missing_salt_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(logs.SaltMissing):
        load_salt(tmp_path, create=False)
    assert not (tmp_path / logs.SALT_FILE).exists()


def test_a_salt_written_by_another_process_first_is_the_one_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two starts racing (a daemon and `wa-agentd hash-user`): the second link fails, and the
    # loser returns the winner's salt rather than a value no log line was keyed with.
    real_link = logs.os.link

    def link_after_the_other_one(src: str | Path, dst: str | Path) -> None:
        Path(dst).write_text("the-other-process-salt\n")
        real_link(src, dst)

    monkeypatch.setattr(logs.os, "link", link_after_the_other_one)
    assert load_salt(tmp_path) == "the-other-process-salt"
    assert [p.name for p in tmp_path.iterdir()] == [logs.SALT_FILE]


def test_use_salt_keys_every_later_hash() -> None:
    before = logs._key
    try:
        logs.use_salt("operator-salt")
        assert hashed(NUMBER) == hashed(NUMBER, key=logs.salt_key("operator-salt"))
    finally:
        logs._key = before


def test_hash_user_prints_what_the_daemon_logs_and_creates_no_salt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.__main__ import main

    monkeypatch.delenv("WA_AGENTD_LOG_SALT", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(f'[state]\ndir = "{state}"\n')
    # Before the daemon ever ran: no salt, and hash-user must not make one (as root, a file
    # it created would not be the service's).
    assert main(["hash-user", "--config", str(config), NUMBER]) == 1
    assert "no log salt" in capsys.readouterr().err
    assert not state.exists()

    key = logs.salt_key(load_salt(state))  # what the daemon does at start
    assert main(["hash-user", "--config", str(config), NUMBER, "+16505550000"]) == 0
    assert capsys.readouterr().out.split() == [
        hashed(NUMBER, key=key),
        hashed("16505550000", key=key),
    ]
    # A configured salt (here from the environment) wins, as in the daemon.
    monkeypatch.setenv("WA_AGENTD_LOG_SALT", "fleet-salt")
    assert main(["hash-user", "--config", str(config), NUMBER]) == 0
    assert capsys.readouterr().out.split() == [hashed(NUMBER, key=logs.salt_key("fleet-salt"))]


# --------------------------------------------------------------------------- control characters

HOSTILE = "user said \r\n<3>wa_agentd: forged line\x1b[2J\x1b]0;pwned\x07 \x85next\u2028sep\x00"


@pytest.mark.parametrize("journald", [True, False], ids=["journald", "plain"])
def test_control_characters_are_escaped_in_both_formats(
    journald: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a client sent (a header, a provider's error text) cannot start a line of its own,
    forge a priority, or drive the reader's terminal: CR, LF, ESC, BEL, NEL, LS, NUL all come
    out as escapes, on the one line of the record."""
    with daemon_logs(monkeypatch, journald=journald) as out:
        logging.getLogger("daemon.z").warning("got %s", HOSTILE)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert len(text.splitlines()) == 1
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", text[:-1])
    assert (
        "user said \\r\\n<3>wa_agentd: forged line\\x1b[2J\\x1b]0;pwned\\x07 \\x85next"
        "\\u2028sep\\x00"
    ) in text


def test_a_traceback_keeps_its_lines_and_loses_its_controls() -> None:
    formatter = JournalFormatter()
    try:
        raise ValueError("bad header 'a\rb\x1b[31m'\nsecond line of the message")
    except ValueError:
        exc_info = sys.exc_info()
    rec = logging.LogRecord("daemon.x", logging.ERROR, __file__, 1, "failed", None, exc_info)
    rec.turn = ""
    lines = formatter.format(rec).splitlines()
    assert all(line.startswith("<3>daemon.x: ") for line in lines)
    assert any("bad header 'a\\rb\\x1b[31m'" in line for line in lines)
    assert lines[-1].endswith("second line of the message")  # its own line, prefixed
    assert not any(re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", line) for line in lines)
