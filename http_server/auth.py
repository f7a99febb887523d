"""Access control at the HTTP edge: who is calling. Authentication only: what
a caller may do is decided by the RPC service, which receives the user as
the optional Thrift field `Caller` (from `req.context.caller`).

AUTH_MODE (see http_server.config) picks how the caller is known:

- `none`: it is not; `req.context.caller` is None.
- `header`: a gateway in front of us authenticated the client and names the
  user in AUTH_USER_HEADER, which is trusted as it is. The gateway must
  overwrite (or strip) that header on every request it forwards, and clients
  must not reach this server but through it.
- `jwt`: `Authorization: Bearer <token>`, verified here with PyJWT: HS256
  with JWT_SECRET or RS256 with JWT_PUBLIC_KEY_FILE, that one algorithm and
  no other; `exp` required; `iss`/`aud` when configured; the user is the
  JWT_USER_CLAIM claim, a non-empty string.

A caller that cannot be authenticated gets 401 with the usual JSON body (and
`WWW-Authenticate: Bearer` in jwt mode); a message never repeats the token.

Some routes stay open in every mode (OPEN_ROUTES, and the admin routes under
OPEN_PREFIX, whose calls carry an admin token that the RPC server checks).
Which routes are open is decided on the route Falcon matched, by its URI
template, not on the raw path: no spelling of a path can reach a protected
resource through an open name. An unmatched path is a 404 in every mode.
"""

from __future__ import annotations

from typing import Any

import falcon
import jwt
from jwt.types import Options

from http_server import config
from http_server.errors import ApiError

OPEN_ROUTES = frozenset({"/ping", "/healthz", "/metrics", "/openapi.json"})
OPEN_PREFIX = "/api/admin/"

# Why a token was refused, in our own words: PyJWT's messages may quote bytes of the token.
# Subclasses before their bases (InvalidSignatureError is a DecodeError).
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.DecodeError, "token malformed"),
)


def is_open(uri_template: str) -> bool:
    """Whether the route with this URI template needs no authentication."""
    return uri_template in OPEN_ROUTES or uri_template.startswith(OPEN_PREFIX)


class Unauthorized(ApiError):
    """401 with the usual body, and a `WWW-Authenticate` challenge when there is one."""

    def __init__(self, msg: str, challenge: str | None = None) -> None:
        super().__init__(401, msg)
        if challenge:
            self.headers = {**dict(self.headers or {}), "WWW-Authenticate": challenge}


def _bearer_error(reason: str, msg: str | None = None) -> Unauthorized:
    # RFC 6750 3.1; every reason is one of our fixed texts (no quotes to escape).
    return Unauthorized(msg or reason, f'Bearer error="invalid_token", error_description="{reason}"')


class Authentication:
    """Falcon middleware: sets `req.context.caller` to the authenticated user
    id (as given; the RPC service validates it) or None; 401 otherwise.
    Constructing it checks `cfg` (config.ConfigError) and reads the JWT key,
    unless given `jwt_key`, the key of a `cfg` already checked (config.Loaded)."""

    def __init__(self, cfg: config.Config | None = None, jwt_key: config.JwtKey | None = None) -> None:
        cfg = cfg or config.Config()
        self._key = jwt_key or config.check_auth(cfg)
        self._mode = cfg.auth_mode
        self._user_header = cfg.auth_user_header
        self._user_claim = cfg.jwt_user_claim
        self._issuer = cfg.jwt_issuer or None
        self._audience = cfg.jwt_audience or None
        self._leeway = cfg.jwt_leeway_s
        required = ["exp"]
        required += ["iss"] if self._issuer else []
        required += ["aud"] if self._audience else []
        self._options: Options = {"require": required}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.caller = None  # also for unmatched routes, which skip process_resource

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if self._mode == "none" or is_open(req.uri_template or ""):
            return
        req.context.caller = self._header_user(req) if self._mode == "header" else self._token_user(req)

    def _header_user(self, req: falcon.Request) -> str:
        user = req.get_header(self._user_header)
        if not user:
            raise Unauthorized(f"missing {self._user_header} header (set by the gateway)")
        return user

    def _token_user(self, req: falcon.Request) -> str:
        authorization = req.get_header("Authorization")
        if not authorization:
            raise Unauthorized("missing bearer token", "Bearer")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("the Authorization header must be Bearer <token>", "Bearer")
        token = token.strip(" \t")
        if not token or " " in token:
            raise _bearer_error("token malformed")
        assert self._key is not None  # jwt mode: check_auth returned the key
        try:
            claims = jwt.decode(
                token,
                self._key.key,
                algorithms=[self._key.algorithm],  # only ours: not `none`, not the token's choice
                options=self._options,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.MissingRequiredClaimError as e:
            raise _bearer_error(f"token lacks the {e.claim} claim") from None  # a claim we require: exp, iss, aud
        except jwt.PyJWTError as e:
            reason = next((text for kind, text in _REASONS if isinstance(e, kind)), "token invalid")
            raise _bearer_error(reason) from None
        user = claims.get(self._user_claim)
        if not isinstance(user, str) or not user:
            raise _bearer_error("token lacks the user claim", f"token lacks the user claim {self._user_claim!r}")
        return user
