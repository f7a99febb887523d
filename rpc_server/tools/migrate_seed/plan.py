"""Where each seed message goes in a chat's stream, and which are missing:
pure logic over the entries the stream already holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rpc_server.storage.seed_import import EntryId
from rpc_server.tools.migrate_seed.parse import SeedMessage


@dataclass
class Plan:
    """Where each seed message goes in a chat's stream, and what is missing."""

    missing: list[tuple[int, SeedMessage]] = field(default_factory=list)  # (send_time, message), increasing
    present: int = 0
    expired: int = 0
    last_send_time: int = 0  # the chat's last, seed or not


def make_plan(
    messages: Sequence[SeedMessage],
    existing: Mapping[EntryId, Mapping[str, str]],
    floor: int = 0,
    existing_last: int = 0,
) -> Plan:
    """Place `messages` (in order) among the stream's `existing` entries (all
    those at or after the first message's wanted send_time).

    Each message's send_time is its wanted one, at least its predecessor's
    + 1, moved up past entries holding another message. A message is present
    if the entry at that send_time holds the same sender and text; else it is
    missing, unless at or below `floor` (retention: expired). The walk only
    depends on the existing entries, which migrated messages never change,
    so a second run finds every message the first one added.
    """
    plan = Plan(last_send_time=existing_last)
    previous = 0
    for message in messages:
        send_time = max(message.send_time, previous + 1)
        while (fields := existing.get((send_time, 0))) is not None and not _same(fields, message):
            send_time += 1
        previous = send_time
        if (send_time, 0) in existing:
            plan.present += 1
        elif send_time <= floor:
            plan.expired += 1
            continue
        else:
            plan.missing.append((send_time, message))
        plan.last_send_time = max(plan.last_send_time, send_time)
    return plan


def _same(fields: Mapping[str, str], message: SeedMessage) -> bool:
    return fields.get("s") == message.sender and fields.get("t") == message.text
