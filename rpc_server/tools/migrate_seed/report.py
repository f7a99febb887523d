"""What a migration did, chat by chat and in all: the JSON report and
the summary printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rpc_server.tools.migrate_seed.parse import INVALID_REASONS

SKIPPED_SAMPLE = 20  # skipped key names shown in the report


@dataclass
class ChatResult:
    chat: str
    read: int = 0
    added: int = 0
    present: int = 0
    expired: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    merged: bool = False
    conversations: int = 0
    error: str = ""


@dataclass
class Report:
    dry_run: bool
    chats_found: int = 0
    chats_changed: int = 0
    chats_merged: int = 0
    chats_failed: int = 0
    messages_read: int = 0
    messages_added: int = 0
    messages_present: int = 0
    messages_expired: int = 0
    messages_in_failed_chats: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    conversation_entries: int = 0
    keys_skipped: int = 0
    skipped_sample: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def skip(self, key: bytes, reason: str) -> None:
        self.keys_skipped += 1
        if len(self.skipped_sample) < SKIPPED_SAMPLE:
            self.skipped_sample.append({"key": key.decode("utf-8", "backslashreplace"), "reason": reason})

    def add(self, result: ChatResult) -> None:
        self.messages_read += result.read
        self.invalid.update(result.invalid)
        if result.error:
            self.chats_failed += 1
            self.messages_in_failed_chats += result.read - sum(result.invalid.values())
            self.failures.append({"chat": result.chat, "error": result.error})
            return
        self.messages_added += result.added
        self.messages_present += result.present
        self.messages_expired += result.expired
        self.chats_changed += result.added > 0
        self.chats_merged += result.merged
        self.conversation_entries += result.conversations

    @property
    def messages_invalid(self) -> int:
        return sum(self.invalid.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "chats_found": self.chats_found,
            "chats_changed": self.chats_changed,
            "chats_merged": self.chats_merged,
            "chats_failed": self.chats_failed,
            "messages_read": self.messages_read,
            "messages_added": self.messages_added,
            "messages_already_present": self.messages_present,
            "messages_expired": self.messages_expired,
            "messages_invalid": self.messages_invalid,
            "invalid_reasons": dict(sorted(self.invalid.items())),
            "messages_in_failed_chats": self.messages_in_failed_chats,
            "conversation_entries_updated": self.conversation_entries,
            "keys_skipped": self.keys_skipped,
            "skipped_keys_sample": self.skipped_sample,
            "failed_chats": self.failures,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        would = "would be " if self.dry_run else ""
        done = self.messages_added + self.messages_present
        rate = f", {done / self.seconds:,.0f} messages/s" if self.seconds > 0 and done else ""

        def row(label: str, value: object) -> str:
            return f"  {label + ':':<40}{value}"

        lines = ["seed migration" + (" (dry run: nothing written)" if self.dry_run else "")]
        lines.append(row("chats found", f"{self.chats_found:,}"))
        lines.append(row(f"chats {would}changed", f"{self.chats_changed:,} ({self.chats_merged:,} merged)"))
        lines.append(row(f"messages {would}added", f"{self.messages_added:,}"))
        lines.append(row("messages already present", f"{self.messages_present:,}"))
        lines.append(row("messages skipped (invalid)", f"{self.messages_invalid:,}"))
        lines += [f"    {INVALID_REASONS[r]}: {n:,}" for r, n in sorted(self.invalid.items())]
        lines.append(row("messages skipped (retention)", f"{self.messages_expired:,}"))
        lines.append(row(f"conversation entries {would}updated", f"{self.conversation_entries:,}"))
        lines.append(row("keys skipped (not seed chats)", f"{self.keys_skipped:,}"))
        lines += [f"    {s['key']!r}: {s['reason']}" for s in self.skipped_sample]
        if self.keys_skipped > len(self.skipped_sample):
            lines.append(f"    ... and {self.keys_skipped - len(self.skipped_sample):,} more")
        lines.append(row("chats failed", f"{self.chats_failed:,}"))
        lines += [f"    {f['chat']}: {f['error']}" for f in self.failures]
        if self.chats_failed:
            lines.append(
                f"    ({self.messages_in_failed_chats:,} messages in them not, or not all, migrated: run again)"
            )
        lines.append(f"  took {self.seconds:.2f} s{rate}")
        return "\n".join(lines)


def chat_line(result: ChatResult, dry_run: bool) -> str:
    if result.error:
        return f"{result.chat}: FAILED: {result.error}"
    would = "would be " if dry_run else ""
    parts = [f"{result.added} {would}added", f"{result.present} present"]
    if result.invalid:
        parts.append(f"{sum(result.invalid.values())} invalid")
    if result.expired:
        parts.append(f"{result.expired} expired")
    return f"{result.chat}: {', '.join(parts)}" + (f" ({would}merged)" if result.merged else "")
