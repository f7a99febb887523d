"""Schemathesis hooks: the one rule of our API that OpenAPI cannot state.

GET /api/pull takes its fields from a non-empty JSON body when there is one,
and then ignores the query string: the seed's clients send both (its
screenshot shows ?chat=a1:a2... in the URL and another chat in the body, and
the body's chat wins). OpenAPI cannot say "the body or the query", so a
negative case that puts an invalid query next to a valid body would expect a
400 for input the contract tells the server to ignore. For such a case this
hook drops the body, so that the server does read the invalid query.

A valid `wait` on a pull would make each generated case wait up to 30 s
for a message that never comes (the generated chats are empty), hundreds
of times: the hook sets a positive wait to 0. Waiting is tested in
tests/test_longpoll.py; invalid waits (negative, wrong type) stay as
generated.
Loaded with SCHEMATHESIS_HOOKS=tests.schemathesis_hooks.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.core import NOT_SET
from schemathesis.core.parameters import ParameterLocation


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if (
        case.operation.method.upper() == "GET"
        and case.operation.path == "/api/pull"
        and case.body is not NOT_SET
        and meta is not None
        and meta.is_negative_at(ParameterLocation.QUERY)
        and not meta.is_negative_at(ParameterLocation.BODY)
    ):
        case.body = NOT_SET
    if case.operation.path == "/api/pull":
        for fields in (case.query, case.body):
            if isinstance(fields, dict) and _positive_int(fields.get("wait")):
                fields["wait"] = 0
    return case


def _positive_int(value: Any) -> bool:
    """A valid, positive wait (beyond int64 is invalid: left as generated)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
