"""The ``X-Twilio-Signature`` check over the URL Twilio called plus the sorted form
parameters (reference/whatsapp.md §6): pure functions, no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import NamedTuple

from daemon.channels.twilio.wire.form import Params, grouped

SIGNATURE_HEADER = "x-twilio-signature"

# Twilio's SharedKey signing (Public Beta: twilio.com/docs/usage/webhooks/webhook-shared-keys,
# twilio-python 9.13's RequestValidator, twilio-node's examples/WebhookSignatureValidation.md):
# when a Webhooks Rule matches the URL, Twilio signs with the rule's SharedKey secret and its
# algorithm instead of the Auth Token, and adds this header, "key=<sharedKeyId>,
# algorithm=HMAC_SHA256". Only the hash changes: the signed string is the same. Without the
# header (or without algorithm= in it) the signature is the Auth Token's HMAC-SHA1.
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
_HASHES = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}


class SignatureSettings(NamedTuple):
    key: str  # the SharedKey's id ("" when the header names none)
    algorithm: str  # as the header spells it, upper-cased: HMAC_SHA1, HMAC_SHA256, ...


def signature_settings(header: str | None) -> SignatureSettings | None:
    """The ``X-Twilio-Webhooks-Signature-Settings`` header read as twilio-python reads it
    (comma-separated ``name=value``; no ``algorithm=`` means HMAC_SHA1); None without it,
    which means the Auth Token signed the request."""
    if header is None or not header.strip():
        return None
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.partition("=")
        if sep and value.strip():
            fields.setdefault(name.strip().lower(), value.strip())
    return SignatureSettings(fields.get("key", ""), fields.get("algorithm", HMAC_SHA1).upper())


def signature(auth_token: str, url: str, params: Params, *, algorithm: str = HMAC_SHA1) -> str:
    """``X-Twilio-Signature`` for a POST to ``url`` with form ``params`` (§6).

    base64(HMAC-SHA1(auth_token, url + name1 + value1 + ...)) over the names sorted, and the
    distinct values of a repeated name sorted, each once: twilio-python's RequestValidator
    (``sorted(set(values))``) and twilio-node (``Array.from(new Set(paramValue)).sort()``)
    both count a value sent twice once, so ``Foo=a&Foo=a`` is signed as ``Fooa``.
    ``algorithm=HMAC_SHA256`` (a SharedKey's secret as ``auth_token``) hashes the same string
    with SHA-256; any other raises ValueError.
    """
    digest = _HASHES.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported webhook signature algorithm: {algorithm}")
    data = [url]
    by_name = grouped(params)
    for name in sorted(by_name):
        for value in sorted(set(by_name[name])):
            data.append(name + value)
    mac = hmac.new(auth_token.encode("utf-8"), "".join(data).encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def _split_port(hostport: str) -> tuple[str, str]:
    """``host[:port]`` -> (host, port or ""); IPv6 literals keep their brackets."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            return hostport[: end + 1], rest[1:] if rest.startswith(":") else ""
    host, sep, port = hostport.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return hostport, ""


def base_variants(base: str) -> list[str]:
    """``base`` (``scheme://host[:port]``, maybe a path prefix after it) as given, without its
    port, and with the scheme's default port.

    Twilio does not sign consistently with or without the port, so its validator tries both:
    twilio-python's ``remove_port`` drops any port, ``add_port`` adds :443 (https) or :80
    when there is none (§6). Only the origin is varied: the request target is appended
    untouched by the caller. The list has no duplicates and starts with ``base`` itself.
    """
    scheme, sep, rest = base.partition("://")
    authority, slash, prefix = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _split_port(hostport)
    default = "443" if scheme.lower() == "https" else "80"
    variants = [base]
    for netloc_port in ("", port or default):
        netloc = f"{userinfo}{at}{host}" + (f":{netloc_port}" if netloc_port else "")
        candidate = f"{scheme}{sep}{netloc}{slash}{prefix}"
        if candidate not in variants:
            variants.append(candidate)
    return variants


# base64 of the 20 bytes of an HMAC-SHA1 (§6): 26 characters, a 27th whose last two bits are
# zero (base64 of 160 bits, canonical as Twilio's encoder writes it), and one "=".
_SIGNATURE_SHAPE = re.compile(r"[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=")
# base64 of the 32 bytes of an HMAC-SHA256 (a SharedKey's signature): 42 characters, a 43rd
# whose last two bits are zero (256 bits), and one "=".
_SHAPES = {
    HMAC_SHA1: _SIGNATURE_SHAPE,
    HMAC_SHA256: re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="),
}


def signature_well_formed(header: str | None, *, algorithm: str = HMAC_SHA1) -> bool:
    """True when ``header`` has the shape of a signature ``verify`` could accept: checked
    before the body is read, so a request nobody signed costs no body buffering. An
    algorithm this module does not know has no well-formed signature."""
    shape = _SHAPES.get(algorithm.upper())
    return header is not None and shape is not None and shape.fullmatch(header.strip()) is not None


def verify(
    auth_token: str,
    base: str,
    target: str,
    params: Params,
    header: str | None,
    *,
    algorithm: str = HMAC_SHA1,
) -> bool:
    """True when ``header`` signs ``base`` + ``target`` + ``params`` with ``auth_token`` (§6).

    ``base`` is the origin Twilio called (``[twilio] public_url``, or what the daemon saw),
    ``target`` the raw path and query of the request, appended as they came. Every port
    variant of ``base`` is computed and compared in constant time, whatever matched first.
    ``algorithm`` is what ``signature_settings`` read (HMAC_SHA256: ``auth_token`` is then
    the SharedKey's secret); one this module does not know verifies nothing.
    """
    if not auth_token or not header or algorithm.upper() not in _HASHES:
        return False
    given = header.strip().encode("utf-8")
    by_name = grouped(params)
    ok = False
    for candidate in base_variants(base):
        expected = signature(auth_token, candidate + target, by_name, algorithm=algorithm)
        ok |= hmac.compare_digest(expected.encode("ascii"), given)
    return ok


def public_base(public_url: str) -> str:
    """``[twilio] public_url`` as the base of the URL Twilio called.

    Behind a TLS-terminating proxy the daemon sees ``http://127.0.0.1:8080/webhook`` while
    Twilio signed ``https://bot.example.com/webhook`` (§6 pitfalls); hence ``public_url``.
    A proxy that serves us under a prefix must strip it: ``public_url`` carries it.
    """
    return public_url.rstrip("/")
