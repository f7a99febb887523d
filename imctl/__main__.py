"""imctl's commands, arguments and output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from imctl.clients import Client, HttpClient, ServiceError, ThriftClient


def local_time(send_time: int) -> str:
    """A send_time (microseconds since the epoch) in this machine's time zone."""
    moment = datetime.fromtimestamp(send_time / 1_000_000).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} " + moment.strftime("%z")


def show_message(message: dict[str, Any]) -> str:
    return f"{local_time(message['send_time'])}  {message['sender']}: {message['text']}"


def cmd_send(client: Client, args: argparse.Namespace) -> None:
    result = client.send(args.chat, args.sender, args.text, args.idempotency_key)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"sent at {local_time(result['send_time'])} (send_time {result['send_time']})")


def cmd_pull(client: Client, args: argparse.Namespace) -> None:
    page = client.pull(args.chat, args.cursor, args.limit, args.reverse)
    if args.json:
        print(json.dumps(page, ensure_ascii=False))
        return
    for message in page["messages"]:
        print(show_message(message))
    if page["has_more"]:
        print(f"-- more: --cursor {page['next_cursor']}")


def cmd_tail(client: Client, args: argparse.Namespace) -> None:
    """Print the last messages, then each new one as it arrives: over HTTP an
    event stream (GET /api/subscribe), over Thrift long-polls; both from the
    send_time after the last message shown."""
    last = client.pull(args.chat, 0, args.last, reverse=True)["messages"][::-1]
    cursor = last[-1]["send_time"] + 1 if last else 0
    for message in last:
        _print_message(message, args.json)
    for new, message in enumerate(client.follow(args.chat, cursor, args.wait), 1):
        _print_message(message, args.json)
        if args.count is not None and new >= args.count:
            return


def _print_message(message: dict[str, Any], raw: bool) -> None:
    print(json.dumps(message, ensure_ascii=False) if raw else show_message(message), flush=True)


def cmd_health(client: Client, args: argparse.Namespace) -> None:
    """Exit 0 if ready, 1 (with the reason on stderr) if not: a container probe."""
    result = client.health()
    print(json.dumps(result) if args.json else f"ready: {', '.join(f'{k} {v}' for k, v in result.items())}")


def cmd_chats(client: Client, args: argparse.Namespace) -> None:
    page = client.list_chats(args.user or "", args.cursor, args.limit)
    if args.json:
        print(json.dumps(page))
        return
    for chat in page["chats"]:
        last = chat["last_message"]
        print(f"{chat['chat']}  {show_message(last) if last else local_time(chat['last_send_time'])}")
    if page["has_more"]:
        print(f"(more: --cursor {page['next_cursor']})")


def cmd_admin(client: Client, args: argparse.Namespace) -> None:
    if not args.admin_token:
        raise ServiceError(401, "an admin token is required (--admin-token or $ADMIN_TOKEN)")
    if args.command == "delete-chat":
        result = client.delete_chat(args.chat, args.admin_token)
    else:
        result = client.erase_user(args.user, args.admin_token)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"deleted {result['chats_deleted']} chat(s), {result['messages_deleted']} message(s)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imctl", description="Command-line client of the IM backend.")
    p.add_argument(
        "--url",
        default=os.environ.get("IMCTL_URL", "http://localhost:8080"),
        help="HTTP API base URL ($IMCTL_URL, default http://localhost:8080)",
    )
    p.add_argument(
        "--rpc",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="call the RPC server over Thrift instead (without an address: $RPC_ADDR's first, or 127.0.0.1:8888)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per call (default 5)")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.add_argument(
        "--token",
        default=os.environ.get("IMCTL_TOKEN"),
        help="bearer token for a server with AUTH_MODE=jwt ($IMCTL_TOKEN)",
    )
    p.add_argument(
        "--as",
        dest="caller",
        metavar="USER",
        default=os.environ.get("IMCTL_USER") or None,
        help="act as this user ($IMCTL_USER): over HTTP the gateway's user header, for AUTH_MODE=header; "
        "with --rpc the Thrift Caller, which the service checks",
    )
    p.add_argument(
        "--user-header",
        default=os.environ.get("IMCTL_USER_HEADER", "X-User-Id"),
        help="the header that carries --as ($IMCTL_USER_HEADER; the server's AUTH_USER_HEADER, default X-User-Id)",
    )
    commands = p.add_subparsers(dest="command", required=True)

    send = commands.add_parser("send", help="send a message")
    send.add_argument("--chat", required=True, help='"<member1>:<member2>"')
    send.add_argument("--sender", required=True)
    send.add_argument("--text", required=True)
    send.add_argument("--idempotency-key", help="makes a retry safe")
    send.set_defaults(run=cmd_send)

    pull = commands.add_parser("pull", help="print a page of messages")
    pull.add_argument("--chat", required=True)
    pull.add_argument("--cursor", type=int, default=0, help="a send_time (inclusive); 0 = from the start")
    pull.add_argument("--limit", type=int, default=10)
    pull.add_argument("--reverse", action="store_true", help="newest first")
    pull.set_defaults(run=cmd_pull)

    tail = commands.add_parser("tail", help="print the last messages, then new ones as they arrive")
    tail.add_argument("--chat", required=True)
    tail.add_argument("--last", type=int, default=10, help="how many earlier messages to show first")
    tail.add_argument("--wait", type=int, default=25, help="with --rpc: seconds each long-poll waits")
    tail.add_argument("--count", type=int, help="exit after this many new messages")
    tail.set_defaults(run=cmd_tail)

    health = commands.add_parser("health", help="is the service ready? (exit 0: yes; usable as a probe)")
    health.set_defaults(run=cmd_health)

    chats = commands.add_parser("chats", help="a user's chats, most recently active first")
    chats.add_argument("--user", help="whose chats (with AUTH_MODE on: the caller, the default)")
    chats.add_argument("--cursor", type=int, default=0, help="a last_send_time (inclusive); 0 = the most recent")
    chats.add_argument("--limit", type=int, default=10)
    chats.set_defaults(run=cmd_chats)

    delete_chat = commands.add_parser("delete-chat", help="admin: delete a chat and its list entries")
    delete_chat.add_argument("--chat", required=True)
    delete_chat.set_defaults(run=cmd_admin)
    erase_user = commands.add_parser("erase-user", help="admin: delete every chat of a user, and the user's state")
    erase_user.add_argument("--user", required=True)
    erase_user.set_defaults(run=cmd_admin)
    for admin in (delete_chat, erase_user):
        admin.add_argument(
            "--admin-token", default=os.environ.get("ADMIN_TOKEN"), help="the RPC server's ADMIN_TOKEN ($ADMIN_TOKEN)"
        )
    return p


COMMANDS = frozenset({"send", "pull", "tail", "health", "chats", "delete-chat", "erase-user"})


def bare_rpc(argv: list[str]) -> list[str]:
    """`--rpc` followed by a command (`imctl --rpc pull …`) has no address:
    argparse would take the command for one, so it becomes `--rpc=`."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in COMMANDS:
            break  # the command's own arguments: not ours
        if arg == "--rpc" and out[i + 1] in COMMANDS:
            out[i] = "--rpc="
    return out


def rpc_address(rpc: str) -> str:
    """--rpc's address, or the default: the first of $RPC_ADDR (the HTTP server's list), or 127.0.0.1:8888."""
    return rpc or os.environ.get("RPC_ADDR", "").split(",")[0].strip() or "127.0.0.1:8888"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(bare_rpc(sys.argv[1:] if argv is None else argv))
    try:
        client: Client = (
            ThriftClient(rpc_address(args.rpc), args.timeout, args.caller)
            if args.rpc is not None
            else HttpClient(args.url, args.timeout, args.token, args.caller, args.user_header)
        )
        try:
            args.run(client, args)
        finally:
            client.close()
    except ServiceError as e:
        print(f"imctl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
