"""Storage: everything that knows Redis. Every key, channel and SCAN
pattern is in keys.py (no module outside this package builds one); the
Lua scripts are in lua/ and run through scripts.py; store.py pins the
semantics the service relies on (exactly once, no library retries).

It may import the domain's pure modules (chat_id, paging, errors, deadline), config
and observability; never rpc_server.service, wire, process or tools.
"""
