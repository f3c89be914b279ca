"""The state several hosts share, in Redis (``[state] backend = "redis"``; issue 13).

One module per concern; keys.py draws the key layout, takeover.py records the design
(a lease per user with fencing tokens, plus a scanned work index) and the round trips per
turn, errors.py the two errors the daemon acts on. What stays per host, on purpose: the
circuit breakers and retry budgets (daemon/resilience/) — each host judges its own path to
the upstreams, and one host's broken route must not open another's circuit — and each
host's own memory and disk tiers of the caches, in front of the shared ones here.
"""

from typing import TYPE_CHECKING

from daemon.state.redis.audio import RedisAudio as RedisAudio
from daemon.state.redis.audio import RedisMediaIds as RedisMediaIds
from daemon.state.redis.client import RedisClient as RedisClient
from daemon.state.redis.client import check_server as check_server
from daemon.state.redis.client import open_client as open_client
from daemon.state.redis.client import ping as ping
from daemon.state.redis.dedupe import Dedupe as Dedupe
from daemon.state.redis.deferred import RedisDeferred as RedisDeferred
from daemon.state.redis.errors import LeaseLost as LeaseLost
from daemon.state.redis.errors import RedisUnavailable as RedisUnavailable
from daemon.state.redis.journal import FencedJournal as FencedJournal
from daemon.state.redis.journal import JournalTimes as JournalTimes
from daemon.state.redis.journal import RedisJournal as RedisJournal
from daemon.state.redis.keys import Keys as Keys
from daemon.state.redis.keys import user_tag as user_tag
from daemon.state.redis.language import RedisLanguages as RedisLanguages
from daemon.state.redis.leases import Held as Held
from daemon.state.redis.leases import Lease as Lease
from daemon.state.redis.leases import Leases as Leases
from daemon.state.redis.limits import RedisUserLimits as RedisUserLimits
from daemon.state.redis.media import RedisPublicMedia as RedisPublicMedia
from daemon.state.redis.responses import RedisPendingContext as RedisPendingContext
from daemon.state.redis.responses import RedisResponses as RedisResponses
from daemon.state.redis.sessions import RedisSessions as RedisSessions
from daemon.state.redis.takeover import Claim as Claim
from daemon.state.redis.takeover import Probe as Probe
from daemon.state.redis.takeover import WorkIndex as WorkIndex

if TYPE_CHECKING:
    from functools import partial

    from daemon.state import base

    def _fits(
        leases: Leases,
        lease: Lease,
        journal: RedisJournal,
        fenced: FencedJournal,
        sessions: RedisSessions,
        languages: RedisLanguages,
        deferred: RedisDeferred,
        limits: RedisUserLimits,
        responses: RedisResponses,
        pending: RedisPendingContext,
        audio: RedisAudio,
        media_ids: RedisMediaIds,
        public_media: RedisPublicMedia,
    ) -> None:
        """Never called: mypy holds the building blocks to the protocols of state/base.py."""
        _: tuple[
            base.Fence,
            base.Inbox,
            base.Backlog,
            base.Journal,
            base.SessionLog,
            base.Languages,
            base.DeferredMessages,
            base.UserLimits,
            base.Responses,
            base.PendingContexts,
            base.VoiceNotes,
            base.MediaIdStore,
            base.PublicMediaStore,
        ] = (
            partial(leases.may_send, lease),
            journal,
            journal,
            fenced,
            sessions,
            languages,
            deferred,
            limits,
            responses,
            pending,
            audio,
            media_ids,
            public_media,
        )
