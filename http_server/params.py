"""Reading a request's fields: from a JSON body, a form, or the query string.

The seed's clients send a JSON body, even on GET (Postman, as in the seed's
screenshots); browsers and curl users expect a query string or a form. Both
endpoints accept all three. A non-empty body is used alone (the seed's own
screenshot sends a query string and a different chat in the body, and shows
the body's chat). This module checks only syntax and types; what the values
mean (chat form, membership, limits) is the RPC service's to judge.

JSON is typed strictly: strings must be strings, integers integers (not
floats, not booleans), booleans booleans, and null is none of them. In a
query string or form everything is text: integers are decimal digits,
booleans true/false/1/0 in any case; an empty value counts as absent.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

import falcon
from falcon.media import MultipartFormHandler

from http_server.errors import ApiError
from http_server.slow_clients import BodyTimeout

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# An int64 has at most 19 digits; longer strings (even with leading zeros)
# are refused before int() sees them: it rejects over 4300 digits itself.
_DECIMAL = re.compile(r"[+-]?0*([0-9]{1,19})")
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})
_ABSENT = object()


class Params:
    """Typed access to a request's fields."""

    def __init__(self, fields: Mapping[str, Any], typed: bool) -> None:
        self._fields = fields
        self._typed = typed  # JSON (typed values) or text (query string, form)

    def string(self, name: str) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{name} is not valid Unicode (lone surrogate)") from None
        return value

    def integer(self, name: str) -> int | None:
        value = self._get(name)
        if value is None:
            return None
        if self._typed:
            if type(value) is not int:
                raise ApiError(400, f"{name} must be an integer")
        elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
            if not _DECIMAL.fullmatch(value):
                raise ApiError(400, f"{name} is out of range (64-bit integer)")
            value = int(value)
        else:
            raise ApiError(400, f"{name} must be an integer")
        if not INT64_MIN <= value <= INT64_MAX:
            raise ApiError(400, f"{name} is out of range (64-bit integer)")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._get(name)
        if value is None:
            return None
        if self._typed:
            if isinstance(value, bool):
                return value
        elif isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ApiError(400, f"{name} must be a boolean ({'true or false' if self._typed else 'true, false, 1 or 0'})")

    def reject_unknown(self, known: Collection[str]) -> None:
        """Query strings and forms are ours alone: an unknown name is a typo
        (`revrse=true`) worth a 400. JSON bodies may carry extra keys, as the
        seed's Go binding ignored them."""
        if not self._typed:
            unknown = sorted(set(self._fields) - set(known))
            if unknown:
                raise ApiError(400, f"unknown field {unknown[0]!r}; expected one of: {', '.join(known)}")

    def _get(self, name: str) -> Any:
        value = self._fields.get(name, _ABSENT)
        if value is _ABSENT:
            return None
        if value is None:  # JSON null: present, of no type we accept
            raise ApiError(400, f"{name} must not be null")
        if not self._typed and isinstance(value, list):  # a repeated query/form field
            raise ApiError(400, f"{name} is given more than once")
        return value


def read_params(req: falcon.Request, max_body_bytes: int) -> Params:
    body = _read_body(req, max_body_bytes)
    if not body.strip():
        return Params(req.params, typed=False)
    media_type = (req.content_type or "").partition(";")[0].strip().lower()
    if media_type == falcon.MEDIA_URLENCODED:
        if body.lstrip().startswith(b"{"):  # curl -d '{...}' without a Content-Type
            raise ApiError(
                400,
                "the body looks like JSON but was sent as a form (application/x-www-form-urlencoded, "
                "curl -d's default): send it with the header Content-Type: application/json",
            )
        return Params(falcon.uri.parse_query_string(_text(body)), typed=False)
    if media_type == falcon.MEDIA_MULTIPART:
        return Params(_multipart_fields(req, body), typed=False)
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"malformed JSON body: {e}") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "the JSON body must be an object")
    return Params(fields, typed=True)


def _read_body(req: falcon.Request, max_body_bytes: int) -> bytes:
    """The whole body, at most `max_body_bytes` (413 beyond): sized by its
    Content-Length, or chunked (gevent's pywsgi decodes the chunks; the size
    is then known only once read). No body is ever ignored: a transfer
    coding we cannot decode is a 400, the connection closed after it."""
    coding = (req.get_header("Transfer-Encoding") or "").strip().lower()
    if coding and coding != "chunked":
        raise ApiError(
            400, f"Transfer-Encoding {coding!r} is not supported: send Content-Length, or chunked alone", close=True
        )
    if req.content_length is not None and req.content_length > max_body_bytes:
        raise ApiError(413, f"request body larger than {max_body_bytes} bytes")
    try:
        # Chunked: there is no Content-Length, so read the raw stream (Falcon's bounded_stream would read nothing).
        stream = req.stream if coding else req.bounded_stream
        body: bytes = stream.read(max_body_bytes + 1)
    except BodyTimeout:  # too slow to arrive, not malformed: 408 (http_server.app)
        raise
    except OSError as e:  # gevent's chunk decoder: a malformed chunk, or the client gone mid-body
        raise ApiError(400, f"malformed chunked body: {e}", close=True) from None
    if len(body) > max_body_bytes:
        raise ApiError(413, f"request body larger than {max_body_bytes} bytes")
    return body


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the form body is not valid UTF-8") from None


def _multipart_fields(req: falcon.Request, body: bytes) -> dict[str, Any]:
    """A multipart form's fields, each a text part; a repeated one becomes a
    list (refused by Params). A file part (one with a filename, whatever its
    type) or a part that is not text/plain is a 400: fields here are text."""
    fields: dict[str, Any] = {}
    try:
        form = MultipartFormHandler().deserialize(io.BytesIO(body), req.content_type, len(body))
        for part in form:
            name = part.name or ""
            text = part.get_text() if part.filename is None else None
            if text is None:
                raise ApiError(400, f"form field {name} must be text, not a file")
            fields[name] = [fields[name], text] if name in fields else text
    except falcon.MediaMalformedError as e:
        raise ApiError(400, f"malformed multipart form: {e.description}") from None
    return fields
