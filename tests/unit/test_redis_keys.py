"""daemon/state/redis/keys.py: one hash tag per user, and no phone number in a key name."""

from __future__ import annotations

import re

import pytest

from daemon.state.redis.keys import Keys, message_tag, user_tag

NUMBER = "+971500000001"
WAMID = "wamid.HBgMOTcxNTAwMDAwMDAxFQIAEhggQTNFQjc2RjQ1QUEA"


def test_a_users_keys_share_one_hash_tag() -> None:
    keys = Keys("wa-agentd:")
    tag = user_tag(NUMBER)
    built = [
        keys.lease(tag), keys.fence(tag), keys.open(tag), keys.session(tag),
        keys.seen(tag, message_tag(WAMID)), keys.turn(tag, message_tag(WAMID)),
        keys.user(tag, "lang"),
    ]  # fmt: skip
    # Redis Cluster hashes the part between the first "{" and the next "}".
    assert {re.search(r"\{(.*?)\}", k).group(1) for k in built} == {tag}  # type: ignore[union-attr]
    assert all(k.startswith("wa-agentd:{") for k in built)
    assert keys.turn(tag, "m").startswith(keys.turn_prefix(tag))


def test_tags_are_stable_and_hide_the_number() -> None:
    assert user_tag(NUMBER) == user_tag(NUMBER) != user_tag("+971500000002")
    assert re.fullmatch(r"[0-9a-f]{20}", user_tag(NUMBER))
    assert re.fullmatch(r"[0-9a-f]{24}", message_tag(WAMID))
    keys = Keys("wa-agentd:")
    key = keys.seen(user_tag(NUMBER), message_tag(WAMID))
    assert "971500000001" not in key and "wamid" not in key


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "a b"])
def test_a_prefix_that_would_break_hash_tags_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        Keys(prefix)
