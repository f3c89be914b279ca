"""One webhook delivery's messages into the durable inbox and the lanes: the step between the
parsed batch and the 200.

    parsed batch ─▶ storable? ─▶ inbox (dedupe) ─▶ per-user limits ─▶ lane ─▶ 200
                      │ no: skipped        │ over, notice given: done, dropped
                      ▼ counted            ▼ over, first time: its turn says the notice

Rules, each so that one user (or one bad message) never costs the others:

- A message the inbox cannot store (``Inbound.unstorable``) is skipped and counted; the
  parsers skip them already, this is the net under them.
- Limits are decided here, as a message comes in, so a flood is dropped before it fills a
  lane or reaches the agent. A message over a limit is answered 200 and written down as done
  (Meta's redelivery is a duplicate); the first one of its window instead goes to its lane
  with the limit noted in the journal, and its turn sends the one polite notice.
- A message whose user's lane is full stays in the inbox (``lanes.Waiting``): the resume
  loop hands it over in order. At most ``max_waiting`` per user (``lanes.TooManyWaiting``);
  beyond that, the message is dropped and counted. The order itself is daemon/lanes.py's.
- Only a global bound (too many users, the queue across users full) or a drain answers the
  delivery 503: then the messages not yet queued are forgotten, so Meta's redelivery brings
  them again while those queued are duplicates.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from daemon.lanes import Closed, Lanes, Overloaded, TooManyWaiting, Waiting
from daemon.limits import UserLimits
from daemon.model import Inbound
from daemon.state.base import Inbox, Stage

log = logging.getLogger(__name__)


class Taken(enum.Enum):
    """How a delivery as a whole is answered."""

    ACCEPTED = "accepted"  # 200: every message is queued, waiting in the inbox, or dropped
    OVERLOADED = "overloaded"  # 503: a global bound; the rest comes again with the retry
    DRAINING = "draining"  # 503: shutting down


async def take(
    messages: Sequence[Inbound],
    *,
    inbox: Inbox,
    lanes: Lanes,
    limits: UserLimits | None,
    max_waiting: int,
    count: Callable[[str, int], None],
) -> Taken:
    """Write ``messages`` down and hand them to their lanes; ``count(outcome, n)`` counts what
    became of them (the ``wa_agentd_messages`` outcomes)."""
    storable = [m for m in messages if not m.unstorable()]
    if len(storable) < len(messages):
        count("ignored_unstorable", len(messages) - len(storable))
    # Written down before the 200 (durable, and the dedupe in one transaction): a message
    # we answered 200 for is never lost, and a redelivered id is never turned twice.
    new = await inbox.accept(storable)
    if len(new) < len(storable):
        count("duplicate", len(storable) - len(new))
    outcomes: Counter[str] = Counter()
    dropped: dict[str, list[str]] = {}  # outcome -> message ids done without a turn
    try:
        for i, message in enumerate(new):
            if limits is not None:
                verdict = await limits.admit(message.user.key)
                if not verdict.allowed:
                    assert verdict.limit is not None
                    outcome = f"limited_{verdict.limit.value}"
                    if not verdict.notify:
                        dropped.setdefault(outcome, []).append(message.message_id)
                        outcomes["limited"] += 1
                        continue
                    # The first of its window: its turn says the notice (daemon/turn.py).
                    await inbox.progress(message.message_id, Stage.RECEIVED, outcome=outcome)
            try:
                lanes.submit(message, max_waiting=max_waiting)
            except TooManyWaiting as exc:
                log.warning("message dropped: %s", exc)
                dropped.setdefault("dropped_waiting", []).append(message.message_id)
                outcomes["dropped_waiting"] += 1
                continue
            except Waiting:
                outcomes["waiting"] += 1  # it stays in the inbox; the resume loop brings it
                continue
            except (Closed, Overloaded) as exc:
                # The messages before this one are queued (or waiting); the provider's
                # redelivery of the whole batch skips them as duplicates and brings the rest.
                await inbox.forget([m.message_id for m in new[i:]])
                if isinstance(exc, Closed):
                    return Taken.DRAINING
                log.warning("webhook refused: %s", exc)
                return Taken.OVERLOADED
            outcomes["accepted"] += 1
    finally:
        for outcome, ids in dropped.items():
            await inbox.finish_unanswered(ids, outcome=outcome)
        for name, n in outcomes.items():
            count(name, n)
    return Taken.ACCEPTED
