"""Twilio's WhatsApp wire format: pure functions, no I/O (reference/whatsapp.md §6).

signature.py  X-Twilio-Signature over the URL Twilio called plus the sorted form
              parameters (the Auth Token's HMAC-SHA1, or a SharedKey's algorithm)
form.py       the form-encoded body, read strictly
parse.py      the webhook turned into a provider-neutral ``Batch``
messages.py   the answer to a webhook (TwiML) and the Messages API form
errors.py     Twilio's error JSON mapped onto the daemon's error tree
"""

from __future__ import annotations

from daemon.channels.twilio.wire.errors import UPSTREAM as UPSTREAM
from daemon.channels.twilio.wire.errors import parse_error as parse_error
from daemon.channels.twilio.wire.form import Params as Params
from daemon.channels.twilio.wire.form import parse_form as parse_form
from daemon.channels.twilio.wire.messages import EMPTY_TWIML as EMPTY_TWIML
from daemon.channels.twilio.wire.messages import TEXT_LIMIT as TEXT_LIMIT
from daemon.channels.twilio.wire.messages import TWIML_CONTENT_TYPE as TWIML_CONTENT_TYPE
from daemon.channels.twilio.wire.messages import message_form as message_form
from daemon.channels.twilio.wire.parse import ADDRESS_PREFIX as ADDRESS_PREFIX
from daemon.channels.twilio.wire.parse import parse_webhook as parse_webhook
from daemon.channels.twilio.wire.signature import HMAC_SHA1 as HMAC_SHA1
from daemon.channels.twilio.wire.signature import HMAC_SHA256 as HMAC_SHA256
from daemon.channels.twilio.wire.signature import SIGNATURE_HEADER as SIGNATURE_HEADER
from daemon.channels.twilio.wire.signature import (
    SIGNATURE_SETTINGS_HEADER as SIGNATURE_SETTINGS_HEADER,
)
from daemon.channels.twilio.wire.signature import SignatureSettings as SignatureSettings
from daemon.channels.twilio.wire.signature import base_variants as base_variants
from daemon.channels.twilio.wire.signature import public_base as public_base
from daemon.channels.twilio.wire.signature import signature as signature
from daemon.channels.twilio.wire.signature import signature_settings as signature_settings
from daemon.channels.twilio.wire.signature import signature_well_formed as signature_well_formed
from daemon.channels.twilio.wire.signature import verify as verify
