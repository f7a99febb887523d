"""The store's Lua scripts (lua/), called by their SHA1 with EVALSHA, and
loaded again, once, where Redis answers NOSCRIPT.

NOSCRIPT comes before anything runs (Redis restarted, failed over to a
replica that never saw SCRIPT LOAD, or flushed its scripts), so loading the
script on the node that said it and sending the call again runs it once.
redis-py's `Script` objects are not used: they hide which node loads what.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis


class LuaScript:
    """A script from lua/; `prelude` files (shared functions) are prepended to it."""

    def __init__(self, name: str, *prelude: str) -> None:
        folder = resources.files(__package__).joinpath("lua")
        self.source = "\n".join(folder.joinpath(part).read_text() for part in (*prelude, name))
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def command(self, keys: Sequence[str], args: Sequence[str | int]) -> tuple[Any, ...]:
        """The EVALSHA command that runs it on `keys` with `args`."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def run(
        self,
        execute: Callable[..., Any],
        client_for: Callable[[str], redis.Redis],
        keys: Sequence[str],
        args: Sequence[str | int],
    ) -> Any:
        """Run it through `execute` (a client's execute_command, or the
        store's coalescing runner); on NOSCRIPT, load it on the node that
        holds keys[0] (`client_for`) and send it once more."""
        command = self.command(keys, args)
        try:
            return execute(*command)
        except redis.exceptions.NoScriptError:  # it did not run
            client_for(keys[0]).script_load(self.source)
            return execute(*command)
