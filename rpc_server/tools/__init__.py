"""Offline operator commands, each `python -m rpc_server.tools.<name>`:
sweep (retention now), reindex (conversation lists), index_records (a
one-off after an upgrade), migrate_seed (the seed's data). They read the
RPC server's settings and go through storage; they never import wire,
process or service.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from plumbing.settings import StartupError, fail


def run(main: Callable[[], int], prog: str) -> NoReturn:
    """Exit with main()'s status; a setting out of range is one line and
    exit status 2, as the servers do."""
    try:
        sys.exit(main())
    except StartupError as e:
        fail(prog, e)
