"""``[state] backend = "memory"``: the real daemon keeps its inbox, journal and sessions in
the process — the same dedupe and the same answers, nothing written to the state dir."""

from __future__ import annotations

from pathlib import Path

import trio

from daemon.sim.stack import open_stack
from daemon.state import FILE_NAME
from daemon.state.memory import MemoryStore

ALICE = "16505551234"


async def test_the_memory_backend_answers_once_and_writes_no_file() -> None:
    async with open_stack(state={"backend": "memory"}) as stack:
        _, body = stack.text_body(ALICE, "What are your opening hours?")
        with trio.fail_after(10):
            for _ in range(2):  # a redelivery: still a duplicate, in memory too
                assert (await stack.post_body(body)).status_code == 200
            [sent] = await stack.wait_delivered(1)
            [report] = await stack.wait_reports(1)
        state_dir = Path(stack.settings.state.dir)
        assert isinstance(stack.daemon.web.inbox, MemoryStore)
        record = await stack.daemon.web.inbox.get(report.message_id)
    assert report.outcome == "answered" and sent.type == "text"
    assert record is not None and record.finished
    assert len(stack.agentforce.received) == 1
    assert stack.daemon.web.stats.messages["duplicate"] == 1
    assert not (state_dir / FILE_NAME).exists()
