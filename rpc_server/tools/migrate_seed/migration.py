"""The migration, chat by chat: read the seed's members, parse them, plan
where each goes in the chat's stream, and write what is missing through
rpc_server.storage.seed_import; a chat whose stream changed meanwhile is
read again, a few times."""

from __future__ import annotations

import sys
import time

from rpc_server.chat_id import Chat
from rpc_server.storage.seed_import import ChatChanged, ImportTarget, SeedSource, parse_id, trimmed_floor
from rpc_server.tools.migrate_seed.parse import (
    DEFAULT_MAX_FUTURE_S,
    MAX_TIMESTAMP,
    US_PER_S,
    SeedMessage,
    seed_messages,
)
from rpc_server.tools.migrate_seed.plan import make_plan
from rpc_server.tools.migrate_seed.report import ChatResult, Report, chat_line

ATTEMPTS = 5  # per chat, when its stream keeps changing during a merge


class Migration:
    def __init__(
        self,
        source: SeedSource,
        target: ImportTarget,
        retention_max_age_s: int = 0,
        verbose: bool = False,
        max_future_s: int = DEFAULT_MAX_FUTURE_S,
    ) -> None:
        self.source = source
        self.target = target
        self.dry_run = target.dry_run
        self.retention_max_age_us = retention_max_age_s * US_PER_S
        self.verbose = verbose
        self.max_future_s = max_future_s
        self.latest = MAX_TIMESTAMP  # the last timestamp accepted: set from the target's clock by run()

    def run(self) -> Report:
        started = time.monotonic()
        report = Report(self.dry_run)
        self.latest = min(MAX_TIMESTAMP, self.target.now_us() // US_PER_S + self.max_future_s)
        chats = self.source.chats(report.skip)
        report.chats_found = len(chats)
        for chat_id in sorted(chats):
            chat, keys = chats[chat_id]
            result = self.migrate_chat(chat, keys)
            report.add(result)
            if self.verbose or result.error:
                print(chat_line(result, self.dry_run), file=sys.stderr, flush=True)
        report.seconds = time.monotonic() - started
        return report

    def migrate_chat(self, chat: Chat, keys: list[bytes]) -> ChatResult:
        result = ChatResult(chat.id)
        try:
            members = [pair for key in keys for pair in self.source.members(key)]
            messages, result.read = seed_messages(members, chat, result.invalid, self.latest)
            if not messages:
                return result
            for _ in range(ATTEMPTS):
                try:
                    self._migrate(chat, messages, result)
                    return result
                except ChatChanged:
                    continue
            raise ChatChanged(f"its stream kept changing during {ATTEMPTS} attempts; run again")
        except Exception as e:  # reported, and the other chats go on
            result.error = f"{type(e).__name__}: {e}"
            return result

    def _migrate(self, chat: Chat, messages: list[SeedMessage], result: ChatResult) -> None:
        target = self.target
        state = target.stream_state(chat)
        first = f"{messages[0].send_time}-0"
        after = target.entries(chat, first, "+") if state else []
        existing = {parse_id(entry_id): fields for entry_id, fields in after}
        floor = trimmed_floor(state) if state else 0
        if self.retention_max_age_us:
            floor = max(floor, target.now_us() - self.retention_max_age_us)
        existing_last = parse_id(after[-1][0])[0] if after else 0
        plan = make_plan(messages, existing, floor, existing_last)
        missing = [(send_time, m.sender, m.text) for send_time, m in plan.missing]
        merge = bool(missing and state and (missing[0][0], 0) <= parse_id(state["last-generated-id"]))
        if missing and not self.dry_run:
            if merge:
                assert state is not None
                before = target.entries(chat, "-", f"({first}")
                target.merge(chat, state, before + after, missing)
            else:
                target.append(chat, missing)
        result.added, result.present, result.expired = len(missing), plan.present, plan.expired
        result.merged = merge
        if plan.last_send_time:
            result.conversations = target.touch_conversations(chat, plan.last_send_time)
