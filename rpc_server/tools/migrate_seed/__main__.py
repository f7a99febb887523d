"""`python -m rpc_server.tools.migrate_seed`: its command line (see the
package's docstring for what it does)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import redis

from rpc_server import config
from rpc_server.storage.redis_client import connect, redacted
from rpc_server.storage.seed_import import ImportTarget, SeedSource, source_client
from rpc_server.tools import run
from rpc_server.tools.migrate_seed.migration import Migration
from rpc_server.tools.migrate_seed.parse import DEFAULT_MAX_FUTURE_S


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rpc_server.tools.migrate_seed",
        description="Copy the seed's messages (a sorted set per chat, key 'a:b') into this server's layout "
        "(a stream per chat). The target Redis is the RPC server's: REDIS_URL or REDIS_CLUSTER_NODES, ... "
        "from the environment. The seed's keys are only read.",
    )
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be added")
    p.add_argument(
        "--source-url",
        help="the seed's Redis (default: the target Redis, $REDIS_URL; required with REDIS_CLUSTER_NODES)",
    )
    p.add_argument("--match", default="*", help="only keys matching this glob (SCAN MATCH), e.g. one chat 'a:b'")
    p.add_argument("--json", action="store_true", help="print the report as a JSON object (the summary to stderr)")
    p.add_argument("--verbose", action="store_true", help="a line per chat, on stderr")
    p.add_argument("--timeout-ms", type=int, default=10_000, help="Redis command timeout (default 10000)")
    p.add_argument(
        "--max-future-s",
        type=int,
        default=DEFAULT_MAX_FUTURE_S,
        help="skip (as timestamp_future) messages dated more than this many seconds after the target Redis's "
        f"clock: a far-future send_time holds back every later send in its chat (default {DEFAULT_MAX_FUTURE_S})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.max_future_s < 0:
        print(f"error: --max-future-s must be 0 or more, not {args.max_future_s}", file=sys.stderr)
        return 2
    cfg = config.load([])  # the RPC server's settings, from the environment
    timeout_ms = max(args.timeout_ms, cfg.redis_timeout_ms)
    cfg = dataclasses.replace(cfg, redis_timeout_ms=timeout_ms, redis_pool_wait_ms=timeout_ms, redis_pool_size=4)
    if args.source_url is None and cfg.redis_cluster_nodes:
        print("error: --source-url is required with REDIS_CLUSTER_NODES (the seed used one Redis)", file=sys.stderr)
        return 2
    source_url = args.source_url or cfg.redis_url
    target_name = cfg.redis_cluster_nodes or redacted(cfg.redis_url)
    try:
        target = connect(cfg)
        target.ping()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
        print(f"error: target Redis {target_name}: {e}", file=sys.stderr)
        return 2
    try:
        source = source_client(source_url, timeout_ms / 1000, cfg.redis_tls_ca_file)
        source.ping()
    except redis.RedisError as e:
        print(f"error: the seed's Redis {redacted(source_url)}: {e}", file=sys.stderr)
        return 2
    migration = Migration(
        SeedSource(source, args.match),
        ImportTarget(target, args.dry_run),
        cfg.retention_max_age_s,
        args.verbose,
        args.max_future_s,
    )
    try:
        report = migration.run()
    except redis.RedisError as e:  # the SCAN of the seed's keys
        print(f"error: reading the seed's keys from {redacted(source_url)}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(report.summary(), file=sys.stderr)
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        print(report.summary())
    return 1 if report.chats_failed else 0


if __name__ == "__main__":
    run(main, "rpc_server.tools.migrate_seed")
