"""The whole world on loopback: the three simulators and the real daemon pointed at them.

Used by ``wa-agentd demo``, the integration tests and the benchmarks, so all three drive the
daemon the same way: signed webhooks in over real HTTP, and assertions on what reached the
simulated upstreams.
"""

from __future__ import annotations

import base64
import enum
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import trio

from daemon import config, runtime
from daemon.channels.twilio.settings import TwilioConfig
from daemon.observe import logs
from daemon.sim import twilio as twilio_sim
from daemon.sim import webhooks
from daemon.sim.agentforce import AgentforceSim
from daemon.sim.audio import speak
from daemon.sim.base import Changes, Faults
from daemon.sim.elevenlabs import ElevenLabsSim
from daemon.sim.graph import GraphSim
from daemon.sim.graph import SentMessage as GraphSent
from daemon.sim.twilio import TwilioSim, TwilioWebhookSender, webhook_params
from daemon.turn.report import TurnReport

PHONE_NUMBER_ID = "106540352242922"
AGENT_ID = "0XxSIM0000000001AA"
VOICE_ID = "sim-voice"

# Throw-away credentials shared by the simulators and the daemon they test.
SECRETS = {
    "WHATSAPP_ACCESS_TOKEN": "sim-graph-token",
    "WHATSAPP_APP_SECRET": "sim-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "sim-verify-token",
    "AGENTFORCE_CLIENT_ID": "sim-client-id",
    "AGENTFORCE_CLIENT_SECRET": "sim-client-secret",
    "ELEVENLABS_API_KEY": "sim-elevenlabs-key",
    "WA_AGENTD_ADMIN_TOKEN": "sim-admin-token",
    "TWILIO_AUTH_TOKEN": "sim-twilio-auth-token",
}
TWILIO_ACCOUNT_SID = "AC" + "5" * 32
TWILIO_FROM = "whatsapp:+14155238886"

# The WhatsApp-side routes a test can hang (``Stack.hang_whatsapp``), per provider: regular
# expressions over the simulator's request paths (``Faults.hang_paths``).
WHATSAPP_ROUTES: dict[str, dict[str, str]] = {
    "meta": {
        "send": r"/messages$",  # texts and voice notes (and read receipts: the same route)
        "upload": r"/media$",  # POST /{phone-number-id}/media: our voice note's upload
        "media": r"^/v\d+\.\d+/\d+$",  # GET /{media-id}: where the user's voice note is
        "media_bytes": r"^/whatsapp_business/attachments/",  # the bytes behind that URL
    },
    "twilio": {
        "send": r"/Messages\.json$",  # texts and voice notes
        "media": r"/Messages/\w+/Media/\w+$",  # MediaUrl0 (Basic auth), redirects to ...
        "media_bytes": r"^/cdn/",  # ... the bytes, on the CDN
    },
}


def _same_port(host: str, url: str) -> str:
    """``host`` on ``url``'s port: an allowed-hosts entry ([whatsapp] media_hosts)."""
    port = httpx.URL(url).port
    return f"{host}:{port}" if port else host


def sim_sections(
    *,
    graph_url: str,
    agentforce_url: str,
    elevenlabs_url: str,
    twilio_url: str = "",
    **overrides: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Config sections that point the daemon at the simulators; ``overrides`` per section."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"bind": "127.0.0.1:0"},
        # Not the default 127.0.0.1:9464: daemons of tests running side by side would meet.
        "admin": {"bind": "127.0.0.1:0"},
        "whatsapp": {
            "graph_url": f"{graph_url}/v23.0",
            "phone_number_id": PHONE_NUMBER_ID,
            # the sims' media host, on the API's port (which is implied, with its host)
            "media_hosts": [_same_port("localhost", graph_url)],
        },
        "agentforce": {
            "token_url": f"{agentforce_url}/services/oauth2/token",
            "api_url": f"{agentforce_url}/einstein/ai-agent/v1",
            "instance_endpoint": "https://sim.my.salesforce.com",
            "agent_id": AGENT_ID,
        },
        "elevenlabs": {"api_url": elevenlabs_url, "voice_id": VOICE_ID},
    }
    if twilio_url:
        sections["twilio"] = {
            "api_url": twilio_url,
            "account_sid": TWILIO_ACCOUNT_SID,
            "from": TWILIO_FROM,
            "media_hosts": [_same_port("localhost", twilio_url)],  # the CDN, as above
        }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return sections


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A config file for ``sections`` (the value types config.toml uses)."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars and lists are TOML
    return "\n".join(lines) + "\n"


@dataclass
class Sims:
    """The three simulated upstreams, serving on loopback."""

    graph: GraphSim
    agentforce: AgentforceSim
    elevenlabs: ElevenLabsSim
    twilio: TwilioSim

    def sections(self, **overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return sim_sections(
            graph_url=self.graph.base_url or "",
            agentforce_url=self.agentforce.base_url,
            elevenlabs_url=self.elevenlabs.base_url,
            twilio_url=self.twilio.base_url or "",
            **overrides,
        )

    def settings(self, **overrides: Mapping[str, Any]) -> config.Settings:
        settings = config.parse(self.sections(**overrides), env=SECRETS)
        config.validate_ready(settings)
        return settings


@asynccontextmanager
async def open_sims(
    *,
    graph_faults: Faults | None = None,
    agentforce_faults: Faults | None = None,
    elevenlabs_faults: Faults | None = None,
    twilio_faults: Faults | None = None,
    agentforce_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[Sims]:
    async with trio.open_nursery() as nursery:
        sims = Sims(
            graph=GraphSim(
                access_token=SECRETS["WHATSAPP_ACCESS_TOKEN"],
                phone_number_id=PHONE_NUMBER_ID,
                faults=graph_faults,
            ),
            agentforce=AgentforceSim(
                client_id=SECRETS["AGENTFORCE_CLIENT_ID"],
                client_secret=SECRETS["AGENTFORCE_CLIENT_SECRET"],
                agent_id=AGENT_ID,
                instance_endpoint="https://sim.my.salesforce.com",
                faults=agentforce_faults,
                **dict(agentforce_options or {}),
            ),
            elevenlabs=ElevenLabsSim(
                api_key=SECRETS["ELEVENLABS_API_KEY"],
                voice_ids=(VOICE_ID,),
                faults=elevenlabs_faults,
            ),
            twilio=TwilioSim(
                account_sid=TWILIO_ACCOUNT_SID,
                auth_token=SECRETS["TWILIO_AUTH_TOKEN"],
                whatsapp_from=TWILIO_FROM,
                faults=twilio_faults,
            ),
        )
        await sims.twilio.start(nursery)
        await sims.graph.start(nursery)
        await sims.agentforce.start(nursery)
        await sims.elevenlabs.start(nursery)
        yield sims
        nursery.cancel_scope.cancel()


@dataclass(frozen=True)
class Delivered:
    """A message the user received, whichever provider carried it."""

    type: str  # "text" | "audio"
    to: str  # the user's number, bare digits
    text: str | None
    audio: bytes | None
    at: float  # simulator clock
    renders_as_voice_note: bool


class _Signed(enum.Enum):
    SIGNED = enum.auto()


SIGNED = _Signed.SIGNED  # default for Stack.post_body: sign the body as the provider does


@dataclass
class WhatsAppSide:
    """WhatsApp's side of the daemon, on either provider: the webhooks its users' messages
    cause, signed as the provider signs them, and what reached the users. ``provider`` says
    which provider the daemon is configured for; every helper here works for both. ``Stack``
    is one; ``DaemonProcess.whatsapp`` makes one for a daemon running as a child process."""

    provider: str
    graph: GraphSim
    twilio: TwilioSim
    client: httpx.AsyncClient  # for talking to the daemon (webhooks, admin routes)
    webhook_url: str  # where the webhook posts go
    signed_url: str  # the webhook URL as Twilio calls it (the public URL): Twilio signs it
    sender: webhooks.WebhookSender = field(init=False)  # Meta's webhook posts
    twilio_sender: TwilioWebhookSender = field(init=False)  # Twilio's webhook posts

    def __post_init__(self) -> None:
        self.sender = webhooks.WebhookSender(
            self.client, self.webhook_url, SECRETS["WHATSAPP_APP_SECRET"]
        )
        self.twilio_sender = TwilioWebhookSender(
            self.client,
            self.webhook_url,
            auth_token=SECRETS["TWILIO_AUTH_TOKEN"],
            signed_url=self.signed_url,
        )

    # -- the user writes (either provider) ---------------------------------------------------

    async def send_text(self, wa_id: str, text: str, **kw: Any) -> tuple[str, httpx.Response]:
        """A user writes ``text``; returns (message id, the daemon's webhook response)."""
        if self.provider == "twilio":
            params = webhook_params(from_wa_id=wa_id, body=text, **kw)
            return dict(params)["MessageSid"], await self.twilio_sender.post(params)
        message = webhooks.text_message(wa_id, text, **kw)
        return message.id, await self.deliver(message)

    async def send_voice(
        self, wa_id: str, spoken: str, *, language: str = "en", **kw: Any
    ) -> tuple[str, httpx.Response]:
        """A user records a voice note saying ``spoken``."""
        if self.provider == "twilio":
            url = self.twilio.add_user_media(speak(spoken, language), "audio/ogg")
            params = webhook_params(from_wa_id=wa_id, media=(url, "audio/ogg"), **kw)
            return dict(params)["MessageSid"], await self.twilio_sender.post(params)
        message = self.voice_note(wa_id, spoken, language=language, **kw)
        return message.id, await self.deliver(message)

    async def send_unsupported(self, wa_id: str) -> tuple[str, httpx.Response]:
        """A user sends a picture: a message type the agent is not asked about."""
        jpeg = b"\xff\xd8\xff\xe0 a picture of a cat"
        if self.provider == "twilio":
            url = self.twilio.add_user_media(jpeg, "image/jpeg")
            params = webhook_params(from_wa_id=wa_id, media=(url, "image/jpeg"))
            return dict(params)["MessageSid"], await self.twilio_sender.post(params)
        media_id = self.graph.add_user_media(jpeg, "image/jpeg")
        message = webhooks.image_message(wa_id, media_id, sha256=webhooks.media_sha256(jpeg))
        return message.id, await self.deliver(message)

    # -- raw webhook bodies (either provider) ------------------------------------------------

    def text_body(self, wa_id: str, text: str) -> tuple[str, bytes]:
        """(message id, the exact bytes the provider posts) for a text message: for tests
        that post one delivery again, tamper with it or sign it wrongly (``post_body``)."""
        if self.provider == "twilio":
            params = webhook_params(from_wa_id=wa_id, body=text)
            return dict(params)["MessageSid"], twilio_sim.encode_form(params)
        message = webhooks.text_message(wa_id, text)
        body = webhooks.envelope(message, phone_number_id=PHONE_NUMBER_ID)
        return message.id, webhooks.encode(body)

    @property
    def content_type(self) -> str:
        """What the provider's webhook posts carry."""
        if self.provider == "twilio":
            return "application/x-www-form-urlencoded; charset=utf-8"
        return "application/json"

    @property
    def signature_header(self) -> str:
        if self.provider == "twilio":
            return twilio_sim.SIGNATURE_HEADER
        return webhooks.SIGNATURE_HEADER

    @property
    def forged_signature(self) -> str:
        """Well-formed for the provider, and wrong."""
        if self.provider == "twilio":
            return base64.b64encode(bytes(20)).decode("ascii")  # an HMAC-SHA1 of zeros
        return "sha256=" + "0" * 64

    def sign(self, body: bytes, secret: str | None = None) -> str:
        """The provider's signature of ``body`` (Twilio: of the URL it calls plus the form's
        fields), with the configured secret or ``secret``."""
        if self.provider == "twilio":
            params = parse_qsl(body.decode(), keep_blank_values=True)
            return twilio_sim.sign(secret or SECRETS["TWILIO_AUTH_TOKEN"], self.signed_url, params)
        return webhooks.sign(body, secret or SECRETS["WHATSAPP_APP_SECRET"])

    async def post_body(
        self, body: bytes, *, signature: str | _Signed | None = SIGNED
    ) -> httpx.Response:
        """POST ``body`` to the webhook as the provider would. ``signature``: ``SIGNED`` signs
        it, a string is sent as the header's value (a forgery), None leaves the header out."""
        headers = {"Content-Type": self.content_type}
        if signature is SIGNED:
            signature = self.sign(body)
        if isinstance(signature, str):
            headers[self.signature_header] = signature
        return await self.client.post(self.webhook_url, content=body, headers=headers)

    # -- what the user received (either provider) --------------------------------------------

    def delivered(self, wa_id: str | None = None) -> list[Delivered]:
        """What reached the user (or anyone) so far, in the order it arrived. (A Twilio voice
        note counts once Twilio fetched its audio from the daemon.)"""
        if self.provider == "twilio":
            want = f"whatsapp:+{wa_id}" if wa_id else None
            return [_from_twilio(m) for m in self.twilio.sent if want in (None, m.to)]
        return [_from_graph(m) for m in self.graph.sent if wa_id in (None, m.to.lstrip("+"))]

    async def wait_delivered(self, count: int, wa_id: str | None = None) -> list[Delivered]:
        """Once ``count`` messages reached the user (or anyone), in the order they arrived."""
        if self.provider == "twilio":
            to = f"whatsapp:+{wa_id}" if wa_id else None
            return [_from_twilio(m) for m in await self.twilio.wait_sent(count, to=to)]
        sent = await self.graph.wait_sent(count, to=f"+{wa_id}" if wa_id else None)
        return [_from_graph(m) for m in sent]

    # -- the WhatsApp side fails (either provider) --------------------------------------------

    @property
    def whatsapp_faults(self) -> Faults:
        """The fault knobs of the simulated WhatsApp API the daemon is configured for."""
        return self.twilio.faults if self.provider == "twilio" else self.graph.faults

    def hang_whatsapp(self, *routes: str) -> None:
        """From now on the named routes of ``WHATSAPP_ROUTES`` never answer; none: all answer
        again. A route the provider does not have (Twilio has no "upload") is a KeyError."""
        table = WHATSAPP_ROUTES[self.provider]
        self.whatsapp_faults.hang_paths = tuple(table[route] for route in routes)

    # -- Meta specifics ------------------------------------------------------------------------

    def voice_note(
        self, wa_id: str, spoken: str, *, language: str = "en", **kw: Any
    ) -> webhooks.UserMessage:
        """A voice note saying ``spoken``, its audio already stored at the simulated Graph."""
        audio = speak(spoken, language)
        media_id = self.graph.add_user_media(audio, "audio/ogg; codecs=opus")
        return webhooks.voice_message(wa_id, media_id, sha256=webhooks.media_sha256(audio), **kw)

    async def deliver(self, *items: webhooks.Item) -> httpx.Response:
        body = webhooks.envelope(*items, phone_number_id=PHONE_NUMBER_ID)
        return await self.sender.post(body)


@dataclass
class Stack(WhatsAppSide):
    """The daemon and its simulated world: the WhatsApp side (either provider), the other
    simulated upstreams, and the summary of every turn the daemon finished."""

    settings: config.Settings
    agentforce: AgentforceSim
    elevenlabs: ElevenLabsSim
    daemon: runtime.Running
    reports: list[TurnReport] = field(default_factory=list)  # turns that ended
    deferred: list[TurnReport] = field(default_factory=list)  # runs to be tried again later
    _reported: Changes = field(default_factory=Changes)

    def add_report(self, report: TurnReport) -> None:
        # A deferred run is not the end of its message: it runs again ([inbox] retry_every).
        (self.deferred if report.outcome == "deferred" else self.reports).append(report)
        self._reported.bump()

    async def wait_reports(self, count: int) -> list[TurnReport]:
        """Return once ``count`` turns have finished (their summary line was emitted)."""
        await self._reported.until(lambda: len(self.reports) >= count)
        return self.reports


def _from_twilio(m: twilio_sim.SentMessage) -> Delivered:
    return Delivered(
        type="audio" if m.media_urls else "text",
        to=m.to.removeprefix("whatsapp:+"),
        text=m.body,
        audio=m.media,
        at=m.at,
        renders_as_voice_note=m.renders_as_voice_note,
    )


def _from_graph(m: GraphSent) -> Delivered:
    return Delivered(
        type=m.type,
        to=m.to.removeprefix("+"),
        text=m.text,
        audio=m.audio,
        at=m.at,
        renders_as_voice_note=m.renders_as_voice_note,
    )


def free_port() -> int:
    """A loopback port free right now (for a daemon whose public URL must be known before it
    starts: Twilio signs the URL it calls and fetches our media from it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def open_stack(
    *,
    provider: str = "meta",
    bind: str = "127.0.0.1:0",
    handle_signals: bool = False,
    graph_faults: Faults | None = None,
    agentforce_faults: Faults | None = None,
    elevenlabs_faults: Faults | None = None,
    twilio_faults: Faults | None = None,
    agentforce_options: Mapping[str, Any] | None = None,
    on_report: Callable[[TurnReport], None] | None = None,
    **overrides: Mapping[str, Any],
) -> AsyncIterator[Stack]:
    """Start the simulators and the daemon; leaving the block stops the daemon gracefully.

    State and cache directories are fresh temporary ones unless ``overrides`` name them."""
    with tempfile.TemporaryDirectory(prefix="wa-agentd-") as scratch:
        async with _open_stack_in(
            scratch,
            provider=provider,
            twilio_faults=twilio_faults,
            bind=bind,
            handle_signals=handle_signals,
            graph_faults=graph_faults,
            agentforce_faults=agentforce_faults,
            elevenlabs_faults=elevenlabs_faults,
            agentforce_options=agentforce_options,
            on_report=on_report,
            **overrides,
        ) as stack:
            yield stack


@asynccontextmanager
async def _open_stack_in(
    scratch: str,
    *,
    provider: str,
    twilio_faults: Faults | None,
    bind: str,
    handle_signals: bool,
    graph_faults: Faults | None,
    agentforce_faults: Faults | None,
    elevenlabs_faults: Faults | None,
    agentforce_options: Mapping[str, Any] | None,
    on_report: Callable[[TurnReport], None] | None,
    **overrides: Mapping[str, Any],
) -> AsyncIterator[Stack]:
    async with open_sims(
        graph_faults=graph_faults,
        agentforce_faults=agentforce_faults,
        elevenlabs_faults=elevenlabs_faults,
        twilio_faults=twilio_faults,
        agentforce_options=agentforce_options,
    ) as sims:
        if provider == "twilio" and bind.endswith(":0"):
            bind = f"127.0.0.1:{free_port()}"
        public_url = f"http://{bind}"
        overrides = {
            "channel": {"provider": provider},
            **overrides,
            "twilio": {"public_url": public_url, **overrides.get("twilio", {})},
        }
        server = {"bind": bind, **overrides.pop("server", {})}
        dirs = {"state": {"dir": f"{scratch}/state"}, "cache": {"dir": f"{scratch}/cache"}}
        for name, values in dirs.items():  # merged per key: a test's [cache] keeps its dir
            overrides[name] = {**values, **overrides.get(name, {})}
        settings = sims.settings(server=server, **overrides)
        stack: Stack | None = None

        def report(r: TurnReport) -> None:
            if stack is not None:
                stack.add_report(r)
            if on_report is not None:
                on_report(r)

        async with trio.open_nursery() as daemon_nursery:
            running: runtime.Running = await daemon_nursery.start(
                lambda task_status: runtime.run(
                    settings,
                    handle_signals=handle_signals,
                    on_report=report,
                    task_status=task_status,
                )
            )
            async with httpx.AsyncClient(timeout=10) as client:
                stack = Stack(
                    provider=provider,
                    graph=sims.graph,
                    twilio=sims.twilio,
                    client=client,
                    webhook_url=running.webhook_url,
                    signed_url=public_url + settings.server.webhook_path,
                    settings=settings,
                    agentforce=sims.agentforce,
                    elevenlabs=sims.elevenlabs,
                    daemon=running,
                )
                try:
                    yield stack
                finally:
                    running.stop.set()


@dataclass
class DaemonProcess:
    """``wa-agentd serve`` as a child process, configured for the simulators."""

    process: trio.Process
    url: str
    webhook_url: str
    log: bytearray  # everything it wrote to stderr so far
    provider: str = "meta"
    signed_url: str = ""  # the webhook URL as Twilio calls it
    state_dir: Path = Path("state")
    admin_url: str = ""  # /metrics, /readyz, /admin/* (its own loopback port)

    def whatsapp(self, sims: Sims, client: httpx.AsyncClient) -> WhatsAppSide:
        """Users of ``sims``' WhatsApp provider writing to this daemon."""
        return WhatsAppSide(
            provider=self.provider,
            graph=sims.graph,
            twilio=sims.twilio,
            client=client,
            webhook_url=self.webhook_url,
            signed_url=self.signed_url or self.webhook_url,
        )

    def user_hash(self, user: str) -> str:
        """``user`` as this daemon's log lines show it (keyed with the salt in its state
        directory, which it creates at start)."""
        return logs.hashed(user, key=logs.salt_key(logs.load_salt(self.state_dir, create=False)))

    async def read_log_until(self, pattern: str) -> str:
        """Read stderr until ``pattern`` (a regex with one group) matches; return the group."""
        regex = re.compile(pattern)
        assert self.process.stderr is not None
        while True:
            match = regex.search(self.log.decode(errors="replace"))
            if match:
                return match.group(1)
            chunk = await self.process.stderr.receive_some(65536)
            if not chunk:
                raise RuntimeError(f"daemon ended before logging {pattern!r}:\n{self.log.decode()}")
            self.log += chunk

    async def drain_log(self) -> None:
        """Keep reading stderr so the child never blocks on a full pipe."""
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.log += chunk


@asynccontextmanager
async def spawn_daemon(
    sims: Sims,
    workdir: Path,
    *,
    provider: str = "meta",
    env: Mapping[str, str] | None = None,
    **overrides: Mapping[str, Any],
) -> AsyncIterator[DaemonProcess]:
    """Write a config for ``sims`` under ``workdir``, start ``wa-agentd serve`` on it (secrets
    from a systemd-style credentials directory) and wait until it listens. Leaving the block
    sends SIGTERM and waits for the exit. On Twilio the daemon gets a port chosen up front:
    its public URL (which Twilio signs and fetches voice notes from) must name it."""
    if provider == "twilio":
        port = free_port()
        overrides = {
            **overrides,
            "channel": {"provider": provider},
            "server": {"bind": f"127.0.0.1:{port}", **overrides.get("server", {})},
            "twilio": {"public_url": f"http://127.0.0.1:{port}", **overrides.get("twilio", {})},
        }
    if "admin" not in overrides:  # a port known up front: nothing to read from the log
        overrides = {**overrides, "admin": {"bind": f"127.0.0.1:{free_port()}"}}
    config_path = workdir / "config.toml"
    config_path.write_text(to_toml(sims.sections(**overrides)))
    creds = workdir / "credentials"
    creds.mkdir(exist_ok=True)
    for name, value in SECRETS.items():
        (creds / name.lower().replace("_", "-")).write_text(value + "\n")
    child_env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    child_env |= {"CREDENTIALS_DIRECTORY": str(creds), "WA_AGENTD_CONFIG": str(config_path)}
    child_env |= dict(env or {})
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "daemon", "serve"],
        env=child_env,
        stderr=subprocess.PIPE,
        cwd=workdir,
    )
    state_dir = Path(overrides.get("state", {}).get("dir") or "state")
    daemon = DaemonProcess(
        process, "", "", bytearray(), provider=provider, state_dir=workdir / state_dir
    )
    try:
        with trio.fail_after(30):
            daemon.url = await daemon.read_log_until(r"listening on (http://\S+)")
        settings = sims.settings(**overrides)
        daemon.webhook_url = daemon.url + settings.server.webhook_path
        daemon.admin_url = f"http://{settings.admin.bind or settings.server.bind}"
        if provider == "twilio":
            public_url = settings.section(TwilioConfig).public_url
            daemon.signed_url = public_url + settings.server.webhook_path
        yield daemon
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        with trio.move_on_after(5):  # what it logged while stopping
            await daemon.drain_log()
