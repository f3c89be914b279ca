"""The load: turns built ahead of time, sent open-loop on a schedule or closed-loop by users,
and matched with the answers that reached the simulated WhatsApp.

Open loop (``open_loop``): webhook ``i`` is due at ``start + i / rate`` whatever happened to
the ones before, so a slow daemon meets the same arrivals a slow daemon meets in production
(Meta does not wait for our answer before delivering the next user's message). Latencies
are measured from the *scheduled* time, not from when the request really went out: a
generator that fell behind (its own loop busy, the kernel's timer late) does not hide the
wait from the figures (no coordinated omission). How late each send really was is kept
too (``Turn.sent - Turn.scheduled``), so a rate the generator itself could not keep shows
as such. Timer wake-ups land on the next millisecond (epoll's resolution), so sends are
typically 0-1 ms late at any rate.

Closed loop (``closed_user``): one user, the next message once the previous answer came
(what people do); used for saturation and for the connection-reuse scenario.

Every text turn asks a question with a unique order number ("Where is my order 1000042?"),
which the agent simulator echoes in its answer: the number ties each answer to its turn,
and it makes the question personal, so the daemon's response cache never answers it (every
turn costs the same three upstream calls as the floor's).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import trio

from daemon.sim import twilio as twilio_sim
from daemon.sim import webhooks
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Sims

from . import http1

NAN = float("nan")
KEY = re.compile(r"order (\d+)")
_keys = itertools.count(1_000_000)


def new_key() -> int:
    """A number no other turn of this run has (text and voice turns share the counter)."""
    return next(_keys)


def question(key: int) -> str:
    return f"Where is my order {key}?"


@dataclass(eq=False)
class Turn:
    """One webhook and, for a message, the answers it got (clock: ``trio.current_time``)."""

    key: int
    user: str  # wa_id, bare digits
    kind: str  # "text" | "voice" | "status"
    data: bytes  # the exact request
    scheduled: float = NAN
    sent: float = NAN
    acked: float = NAN
    status: int = 0  # the webhook's HTTP status; -1: no answer (connection failed)
    text_at: float = NAN
    voice_at: float = NAN
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def finished_at(self) -> float:
        return self.voice_at if self.kind == "voice" else self.text_at


Post = Callable[[bytes], Awaitable[int]]


class Webhooks:
    """Builds the provider's webhook requests for one daemon (signed, exact bytes)."""

    def __init__(self, provider: str, sims: Sims, webhook_url: str, signed_url: str) -> None:
        self.provider = provider
        self.sims = sims
        hostport, _, path = webhook_url.removeprefix("http://").partition("/")
        self.hostport = hostport
        self.path = "/" + path
        self.signed_url = signed_url

    def text(self, user: str) -> Turn:
        key = new_key()
        if self.provider == "twilio":
            return Turn(key, user, "text", self._twilio(user, body=question(key)))
        return Turn(key, user, "text", self._meta(webhooks.text_message(user, question(key))))

    def voice(self, user: str, key: int, audio: bytes) -> Turn:
        """A voice note saying ``question(key)``, recorded beforehand (``audio``)."""
        if self.provider == "twilio":
            url = self.sims.twilio.add_user_media(audio, "audio/ogg")
            return Turn(key, user, "voice", self._twilio(user, media=(url, "audio/ogg")))
        media_id = self.sims.graph.add_user_media(audio, "audio/ogg; codecs=opus")
        message = webhooks.voice_message(user, media_id, sha256=webhooks.media_sha256(audio))
        return Turn(key, user, "voice", self._meta(message))

    def status(self, user: str) -> Turn:
        """A delivery status of one of our messages (Meta posts three per message sent,
        Twilio as many status callbacks)."""
        if self.provider == "twilio":
            sid = twilio_sim.new_sid("SM")
            form = twilio_sim.status_params(sid, "delivered", to_wa_id=user)
            return Turn(new_key(), user, "status", self._form(form))
        item = webhooks.status(webhooks.new_wamid(), "delivered", user)
        return Turn(new_key(), user, "status", self._meta(item))

    def _meta(self, item: webhooks.Item) -> bytes:
        body = webhooks.encode(webhooks.envelope(item, phone_number_id=PHONE_NUMBER_ID))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": webhooks.USER_AGENT,
            webhooks.SIGNATURE_HEADER: webhooks.sign(body, SECRETS["WHATSAPP_APP_SECRET"]),
        }
        return http1.request("POST", self.hostport, self.path, body, headers)

    def _twilio(
        self, user: str, *, body: str | None = None, media: tuple[str, str] | None = None
    ) -> bytes:
        return self._form(twilio_sim.webhook_params(from_wa_id=user, body=body, media=media))

    def _form(self, params: twilio_sim.Form) -> bytes:
        signature = twilio_sim.sign(SECRETS["TWILIO_AUTH_TOKEN"], self.signed_url, params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "User-Agent": twilio_sim.USER_AGENT,
            twilio_sim.SIGNATURE_HEADER: signature,
        }
        return http1.request(
            "POST", self.hostport, self.path, twilio_sim.encode_form(params), headers
        )


class Tracker:
    """Matches what reached the simulated WhatsApp with the turns that caused it.

    A text answer carries its turn's order number; a voice note goes to the user whose voice
    turn already got its text (one voice turn in flight per user at a time). The sims' lists
    are read from where the last pass stopped, every ``interval`` seconds: the times come
    from the simulator's own records, so the polling adds nothing to them.
    """

    def __init__(self, provider: str, sims: Sims) -> None:
        self.provider = provider
        self.sims = sims
        self.turns: dict[int, Turn] = {}
        self.unmatched: Counter[str] = Counter()  # answers no turn of ours explains
        self._voice_waiting: dict[str, deque[Turn]] = {}
        self._seen = 0

    def add(self, turn: Turn) -> Turn:
        if turn.kind != "status":
            self.turns[turn.key] = turn
        return turn

    def forget(self) -> None:
        """Between phases: drop the turns and the sims' records (stored media stay)."""
        self.turns.clear()
        self._voice_waiting.clear()
        self.unmatched.clear()
        self.sims.graph.reset()
        self.sims.twilio.reset()
        self._seen = 0

    async def run(self, interval: float = 0.002) -> None:
        while True:
            self.poll()
            await trio.sleep(interval)

    def poll(self) -> None:
        for kind, to, text, at in self._new_deliveries():
            if kind == "audio":
                waiting = self._voice_waiting.get(to)
                if waiting:
                    turn = waiting.popleft()
                    turn.voice_at = at
                    turn.done.set()
                else:
                    self.unmatched["audio"] += 1
                continue
            match = KEY.search(text or "")
            answered = self.turns.get(int(match.group(1))) if match else None
            if answered is None or not math.isnan(answered.text_at):
                self.unmatched["text"] += 1
                continue
            answered.text_at = at
            if answered.kind == "voice":
                self._voice_waiting.setdefault(to, deque()).append(answered)
            else:
                answered.done.set()

    def _new_deliveries(self) -> Iterator[tuple[str, str, str | None, float]]:
        if self.provider == "twilio":
            sent_t = self.sims.twilio.sent
            for m in sent_t[self._seen :]:
                kind = "audio" if m.media_urls else "text"
                yield kind, m.to.removeprefix("whatsapp:+"), m.body, m.at
            self._seen = len(sent_t)
        else:
            sent_g = self.sims.graph.sent
            for g in sent_g[self._seen :]:
                yield g.type, g.to.lstrip("+"), g.text, g.at
            self._seen = len(sent_g)


async def fire(post: Post, turn: Turn) -> None:
    turn.sent = trio.current_time()
    try:
        turn.status = await post(turn.data)
    except (http1.ProtocolError, trio.BrokenResourceError, OSError):
        turn.status = -1
    turn.acked = trio.current_time()


async def open_loop(post: Post, turns: list[Turn], rate: float, start: float) -> None:
    """Send ``turns[i]`` at ``start + i / rate``, each in its own task; return when all
    webhooks were answered (not the turns: see ``Tracker``)."""
    async with trio.open_nursery() as nursery:
        for i, turn in enumerate(turns):
            turn.scheduled = start + i / rate
            await trio.sleep_until(turn.scheduled)
            nursery.start_soon(fire, post, turn)


async def closed_user(
    post: Post,
    tracker: Tracker,
    next_turn: Callable[[], Turn],
    *,
    start: float,
    until: float,
    patience: float = 60.0,
) -> None:
    """One user from ``start``: a message, its answer, the next message, until ``until``."""
    await trio.sleep_until(start)
    while trio.current_time() < until:
        turn = tracker.add(next_turn())
        turn.scheduled = trio.current_time()
        await fire(post, turn)
        if turn.status != 200:
            continue
        with trio.move_on_after(patience):
            await turn.done.wait()
