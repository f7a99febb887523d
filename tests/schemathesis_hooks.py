"""Schemathesis hooks: the one rule of our API that OpenAPI cannot state.

GET /api/pull takes its fields from a non-empty JSON body when there is one,
and then ignores the query string: the seed's clients send both (its
screenshot shows ?chat=a1:a2... in the URL and another chat in the body, and
the body's chat wins). OpenAPI cannot say "the body or the query", so a
negative case that puts an invalid query next to a valid body would expect a
400 for input the contract tells the server to ignore. For such a case this
hook drops the body, so that the server does read the invalid query.
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
    return case
