"""Meta WhatsApp Cloud API wire format: pure functions, no I/O.

signature.py  the subscription handshake (reference/whatsapp.md §1), X-Hub-Signature-256 (§2.1)
parse.py      the webhook body (§2.2-§2.7, §3) turned into a provider-neutral ``Batch``
payloads.py   the ``/messages`` payloads (§5)
errors.py     Graph error bodies mapped onto the daemon's error tree (§5.1)
decode.py     JSON as Graph sends it (no integer literal can fail a delivery)
"""

from __future__ import annotations

from daemon.channels.meta.wire.decode import OversizedNumber as OversizedNumber
from daemon.channels.meta.wire.decode import loads as loads
from daemon.channels.meta.wire.errors import MEDIA_GONE_CODES as MEDIA_GONE_CODES
from daemon.channels.meta.wire.errors import UPSTREAM as UPSTREAM
from daemon.channels.meta.wire.errors import parse_graph_error as parse_graph_error
from daemon.channels.meta.wire.parse import parse_webhook as parse_webhook
from daemon.channels.meta.wire.payloads import TEXT_LIMIT as TEXT_LIMIT
from daemon.channels.meta.wire.payloads import VOICE_MIME as VOICE_MIME
from daemon.channels.meta.wire.payloads import addressed as addressed
from daemon.channels.meta.wire.payloads import names_media as names_media
from daemon.channels.meta.wire.payloads import read_payload as read_payload
from daemon.channels.meta.wire.payloads import text_payload as text_payload
from daemon.channels.meta.wire.payloads import voice_payload as voice_payload
from daemon.channels.meta.wire.signature import SIGNATURE_HEADER as SIGNATURE_HEADER
from daemon.channels.meta.wire.signature import handshake as handshake
from daemon.channels.meta.wire.signature import signature_well_formed as signature_well_formed
from daemon.channels.meta.wire.signature import verify_signature as verify_signature
