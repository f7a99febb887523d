"""Access control at the HTTP edge (http_server/auth.py, AUTH_* and JWT_*
settings): the middleware on a tiny Falcon app, the settings' start-up
checks, and one real gunicorn with AUTH_MODE=jwt against the session stack."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from http_server import config
from http_server.app import create_app
from http_server.auth import Authentication
from http_server.errors import ApiError, serialize_error
from plumbing.settings import StartupError
from tests.servers import ROOT, HttpServer, Stack, free_port

SECRET = "s3cret-" + "x" * 60  # HS256 wants 32 bytes or more (and HS512, tried below, 64)
OPEN_PATHS = ["/ping", "/healthz", "/metrics", "/openapi.json", "/api/admin/chats/a:b", "/api/admin/users/alice"]


# --- helpers ---------------------------------------------------------------


class Echo:
    """Answers who the caller is."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        resp.media = {"caller": req.context.caller}

    on_post = on_get


def client(**settings: Any) -> falcon.testing.TestClient:
    """The middleware on an app with the real routes' names, each echoing the caller."""
    app = falcon.App(middleware=[Authentication(config.Config(**settings))])
    app.set_error_serializer(serialize_error)
    for route in ["/api/pull", "/api/send", "/ping", "/healthz", "/metrics", "/openapi.json"]:
        app.add_route(route, Echo())
    app.add_route("/api/admin/chats/{chat}", Echo())
    app.add_route("/api/admin/users/{user}", Echo())
    return falcon.testing.TestClient(app)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 300, **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token made by hand: PyJWT itself refuses to sign with alg none or a PEM as an HMAC key."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key is not None else b""
    return signing_input + "." + b64(signature)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


def assert_401(result: Any, token: str | None = None, error: str | None = "invalid_token") -> None:
    assert result.status_code == 401, result.text
    body = result.json
    assert body["code"] == 401 and isinstance(body["msg"], str) and body["msg"]
    challenge = result.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer")
    if error:
        assert f'error="{error}"' in challenge
    if token:  # the token is never repeated, in part or whole
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in result.text and part not in challenge


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def rsa_pem_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> str:
    path = tmp_path / "jwt.pub.pem"
    path.write_bytes(public_pem(rsa_key))
    return str(path)


@pytest.fixture
def rs256(rsa_pem_file: str) -> falcon.testing.TestClient:
    return client(auth_mode="jwt", jwt_public_key_file=rsa_pem_file)


@pytest.fixture
def hs256() -> falcon.testing.TestClient:
    return client(auth_mode="jwt", jwt_secret=SECRET)


# --- AUTH_MODE=none and header ---------------------------------------------


def test_none_mode_has_no_caller_and_ignores_credentials() -> None:
    c = client()
    assert c.simulate_get("/api/pull").json == {"caller": None}
    headers = {"X-User-Id": "mallory", **bearer(jwt.encode(claims(), SECRET, algorithm="HS256"))}
    assert c.simulate_get("/api/pull", headers=headers).json == {"caller": None}


def test_header_mode_trusts_the_gateway_header_as_given() -> None:
    c = client(auth_mode="header")
    assert c.simulate_get("/api/pull", headers={"X-User-Id": "Alice.B"}).json == {"caller": "Alice.B"}
    assert c.simulate_post("/api/send", headers={"x-user-id": "bob"}).json == {"caller": "bob"}


@pytest.mark.parametrize("headers", [{}, {"X-User-Id": ""}, {"X-Other": "alice"}])
def test_header_mode_without_the_header_is_401(headers: dict[str, str]) -> None:
    result = client(auth_mode="header").simulate_get("/api/pull", headers=headers)
    assert result.status_code == 401
    assert result.json["code"] == 401 and "X-User-Id" in result.json["msg"]


def test_header_mode_with_another_header_name() -> None:
    c = client(auth_mode="header", auth_user_header="X-Authenticated-User")
    assert c.simulate_get("/api/pull", headers={"X-Authenticated-User": "carol"}).json == {"caller": "carol"}
    assert c.simulate_get("/api/pull", headers={"X-User-Id": "carol"}).status_code == 401


# --- AUTH_MODE=jwt: accepted ------------------------------------------------


def test_jwt_hs256_valid_token(hs256: falcon.testing.TestClient) -> None:
    token = jwt.encode(claims(sub="Alice_1"), SECRET, algorithm="HS256")
    assert hs256.simulate_get("/api/pull", headers=bearer(token)).json == {"caller": "Alice_1"}
    # the scheme is case-insensitive (RFC 9110 11.1)
    assert hs256.simulate_get("/api/pull", headers={"Authorization": "bearer " + token}).json == {"caller": "Alice_1"}


def test_jwt_rs256_valid_token(rs256: falcon.testing.TestClient, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(claims(sub="bob"), rsa_key, algorithm="RS256")
    assert rs256.simulate_get("/api/pull", headers=bearer(token)).json == {"caller": "bob"}


def test_jwt_ignores_the_gateway_header(hs256: falcon.testing.TestClient) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    result = hs256.simulate_get("/api/pull", headers={"X-User-Id": "mallory", **bearer(token)})
    assert result.json == {"caller": "alice"}
    assert_401(hs256.simulate_get("/api/pull", headers={"X-User-Id": "mallory"}), error=None)


def test_jwt_iss_aud_and_user_claim_when_configured() -> None:
    c = client(
        auth_mode="jwt", jwt_secret=SECRET, jwt_issuer="https://idp", jwt_audience="im", jwt_user_claim="username"
    )
    good = claims(iss="https://idp", aud=["other", "im"], username="dave")
    assert c.simulate_get("/api/pull", headers=bearer(jwt.encode(good, SECRET))).json == {"caller": "dave"}
    for bad in [
        {**good, "iss": "https://evil"},
        {**good, "aud": "other"},
        {k: v for k, v in good.items() if k != "iss"},
        {k: v for k, v in good.items() if k != "aud"},
        {k: v for k, v in good.items() if k != "username"},  # `sub` is there, but not the configured claim
    ]:
        token = jwt.encode(bad, SECRET)
        assert_401(c.simulate_get("/api/pull", headers=bearer(token)), token)


def test_jwt_leeway_on_exp() -> None:
    c = client(auth_mode="jwt", jwt_secret=SECRET, jwt_leeway_s=60)
    recent = jwt.encode(claims(exp=int(time.time()) - 20), SECRET)
    assert c.simulate_get("/api/pull", headers=bearer(recent)).json == {"caller": "alice"}
    old = jwt.encode(claims(exp=int(time.time()) - 120), SECRET)
    assert_401(c.simulate_get("/api/pull", headers=bearer(old)), old)


# --- AUTH_MODE=jwt: refused -------------------------------------------------


def test_jwt_missing_token_is_401_with_a_bare_challenge(hs256: falcon.testing.TestClient) -> None:
    for headers in [{}, {"Authorization": ""}, {"Authorization": "Basic YWxpY2U6cHc="}]:
        result = hs256.simulate_get("/api/pull", headers=headers)
        assert_401(result, error=None)
        assert result.headers["WWW-Authenticate"] == "Bearer"  # RFC 6750 3.1: no error code without credentials


def test_jwt_expired_token(hs256: falcon.testing.TestClient) -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 3600), SECRET)
    result = hs256.simulate_get("/api/pull", headers=bearer(token))
    assert_401(result, token)
    assert "expired" in result.json["msg"]


def test_jwt_without_exp(hs256: falcon.testing.TestClient) -> None:
    token = jwt.encode({"sub": "alice"}, SECRET)
    result = hs256.simulate_get("/api/pull", headers=bearer(token))
    assert_401(result, token)
    assert "exp" in result.json["msg"]


def test_jwt_wrong_signature(hs256: falcon.testing.TestClient, rsa_key: rsa.RSAPrivateKey) -> None:
    for token in [
        jwt.encode(claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
        jwt.encode(claims(), SECRET, algorithm="HS256")[:-4] + "AAAA",
        jwt.encode(claims(), rsa_key, algorithm="RS256"),  # a valid RS256 token is not an HS256 one
        jwt.encode(claims(), SECRET, algorithm="HS512"),  # nor is an HS512 one, with the right secret
    ]:
        assert_401(hs256.simulate_get("/api/pull", headers=bearer(token)), token)


def test_jwt_rs256_wrong_key(rs256: falcon.testing.TestClient) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256")
    result = rs256.simulate_get("/api/pull", headers=bearer(token))
    assert_401(result, token)
    assert "signature" in result.json["msg"]


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_jwt_alg_none_is_refused(hs256: falcon.testing.TestClient, rs256: falcon.testing.TestClient, alg: str) -> None:
    token = forged({"alg": alg, "typ": "JWT"}, claims(), None)
    for c in (hs256, rs256):
        assert_401(c.simulate_get("/api/pull", headers=bearer(token)), token)


def test_jwt_alg_confusion_is_refused(rs256: falcon.testing.TestClient, rsa_key: rsa.RSAPrivateKey) -> None:
    """An HS256 token whose HMAC key is the server's public key text (which an attacker knows)."""
    pem = public_pem(rsa_key)
    for key in (pem, pem.strip(), pem.replace(b"\n", b"\r\n")):
        token = forged({"alg": "HS256", "typ": "JWT"}, claims(), key)
        result = rs256.simulate_get("/api/pull", headers=bearer(token))
        assert_401(result, token)
        assert "algorithm" in result.json["msg"]


@pytest.mark.parametrize(
    "sub",
    [None, "", 42, ["alice"], {"name": "alice"}, True],
)
def test_jwt_user_claim_must_be_a_non_empty_string(hs256: falcon.testing.TestClient, sub: Any) -> None:
    payload = claims()
    if sub is None:
        del payload["sub"]
    else:
        payload["sub"] = sub
    token = forged({"alg": "HS256", "typ": "JWT"}, payload, SECRET.encode())
    assert_401(hs256.simulate_get("/api/pull", headers=bearer(token)), token)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer a.b",
        "Bearer not a token",
        "Bearer ....",
        "Bearer " + "A" * 2000,
        "Bearer " + b64(b'{"alg":"HS256"}') + "." + b64(b"[1,2]") + ".c2ln",
        "Bearer " + b64(b'{"alg":["HS256"]}') + "." + b64(b"{}") + ".c2ln",
        "Bearer " + b64(b"\xff\xfe") + "." + b64(b"\xff") + ".c2ln",
        "Bearer \u00e9\u00e9.\u00e9.\u00e9",
    ],
)
def test_jwt_garbage_is_401_never_500(hs256: falcon.testing.TestClient, authorization: str) -> None:
    result = hs256.simulate_get("/api/pull", headers={"Authorization": authorization})
    assert_401(result, authorization.partition(" ")[2] or None, error=None)


def test_jwt_bad_claim_values_are_401(hs256: falcon.testing.TestClient) -> None:
    for payload in [
        claims(exp="soon"),
        claims(exp=1e400),
        claims(exp=None),
        claims(nbf=int(time.time()) + 3600),
        claims(iat=int(time.time()) + 3600),
        claims(iat="yesterday"),
    ]:
        token = forged({"alg": "HS256", "typ": "JWT"}, payload, SECRET.encode())
        assert_401(hs256.simulate_get("/api/pull", headers=bearer(token)), token)


# --- open routes ------------------------------------------------------------


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_open_routes_stay_open(path: str, rsa_pem_file: str) -> None:
    for c in (client(auth_mode="header"), client(auth_mode="jwt", jwt_public_key_file=rsa_pem_file)):
        result = c.simulate_get(path)
        assert result.status_code == 200, result.text
        assert result.json == {"caller": None}
        # a bad credential does not matter there either
        assert c.simulate_get(path, headers={"Authorization": "Bearer junk"}).status_code == 200


@pytest.mark.parametrize("path", ["/api/pull/", "/ping/../api/pull", "//api/pull", "/api/adminx/chats/a:b", "/nope"])
def test_near_misses_of_open_routes_are_not_open(hs256: falcon.testing.TestClient, path: str) -> None:
    """Openness is decided on the matched route, not on the path's spelling: these are
    either a protected route (401) or no route at all (404), never an open door."""
    result = hs256.simulate_get(path)
    assert result.status_code in (401, 404), f"{path}: {result.status_code} {result.text}"


# --- create_app wiring --------------------------------------------------------


class RefusingService:
    """Stands in for MessageService: every call fails, so a 503 shows the call was made."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise ApiError(503, f"stub {name}")

        return call


def test_create_app_defaults_to_no_authentication() -> None:
    c = falcon.testing.TestClient(create_app(RefusingService(), 65536))  # type: ignore[arg-type]
    assert c.simulate_get("/api/pull", params={"chat": "a:b"}).status_code == 503


def test_create_app_with_jwt_authentication() -> None:
    auth = Authentication(config.Config(auth_mode="jwt", jwt_secret=SECRET))
    c = falcon.testing.TestClient(create_app(RefusingService(), 65536, auth=auth))  # type: ignore[arg-type]
    result = c.simulate_get("/api/pull", params={"chat": "a:b"})
    assert_401(result, error=None)
    assert "X-Request-ID" in result.headers  # the telemetry middleware still answers for it
    token = jwt.encode(claims(), SECRET)
    assert c.simulate_get("/api/pull", params={"chat": "a:b"}, headers=bearer(token)).status_code == 503
    assert c.simulate_get("/ping").status_code == 200


# --- settings ---------------------------------------------------------------


def load(**environ: str) -> config.Config:
    return config.load([], environ=environ)


def test_settings_defaults_and_environment(rsa_pem_file: str) -> None:
    cfg = load()
    defaults = (cfg.auth_mode, cfg.auth_user_header, cfg.jwt_user_claim, cfg.jwt_leeway_s)
    assert defaults == ("none", "X-User-Id", "sub", 30)
    cfg = load(AUTH_MODE="jwt", JWT_PUBLIC_KEY_FILE=rsa_pem_file, JWT_ISSUER="i", JWT_AUDIENCE="a", JWT_LEEWAY_S="5")
    assert (cfg.jwt_public_key_file, cfg.jwt_issuer, cfg.jwt_audience, cfg.jwt_leeway_s) == (rsa_pem_file, "i", "a", 5)
    flags = ["--auth-mode", "header", "--auth-user-header", "X-Gw-User"]
    assert config.load(flags, environ={}).auth_user_header == "X-Gw-User"
    assert config.load(["--auth-mode", "jwt", "--jwt-secret", SECRET], environ={}).jwt_secret == SECRET


def settings_error(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> list[tuple[dict[str, str], str]]:
    """(environment, what the error must say) for each setting that cannot work."""
    ec_pem = tmp_path / "ec.pem"
    ec_pem.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1())))
    small = tmp_path / "small.pem"
    small.write_bytes(public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    private = tmp_path / "private.pem"
    private.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    good = tmp_path / "good.pem"
    good.write_bytes(public_pem(rsa_key))
    return [
        ({"AUTH_MODE": "JWT-please"}, "AUTH_MODE must be one of none, header, jwt"),
        ({"AUTH_MODE": ""}, "AUTH_MODE must be one of"),
        ({"AUTH_MODE": "jwt"}, "exactly one of JWT_SECRET"),
        ({"AUTH_MODE": "jwt", "JWT_SECRET": SECRET, "JWT_PUBLIC_KEY_FILE": str(good)}, "exactly one of JWT_SECRET"),
        ({"AUTH_MODE": "jwt", "JWT_SECRET": "short"}, "at least 32 bytes"),
        ({"AUTH_MODE": "jwt", "JWT_SECRET": public_pem(rsa_key).decode()}, "looks like a public key"),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": str(tmp_path / "missing.pem")}, "cannot read it"),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": str(tmp_path)}, "cannot read it"),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": str(garbage)}, "not a PEM public key"),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": str(private)}, "not a PEM public key"),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": str(ec_pem)}, "not an RSA public key"),
        ({"AUTH_MODE": "jwt", "JWT_PUBLIC_KEY_FILE": str(small)}, "1024 bits"),
        ({"AUTH_MODE": "jwt", "JWT_SECRET": SECRET, "JWT_USER_CLAIM": ""}, "JWT_USER_CLAIM"),
        ({"AUTH_MODE": "jwt", "JWT_SECRET": SECRET, "JWT_LEEWAY_S": "-1"}, "JWT_LEEWAY_S"),
        ({"JWT_SECRET": SECRET}, "JWT_SECRET is set but AUTH_MODE is none"),
        ({"AUTH_MODE": "header", "JWT_PUBLIC_KEY_FILE": str(good)}, "JWT_PUBLIC_KEY_FILE is set but AUTH_MODE"),
        ({"AUTH_MODE": "header", "AUTH_USER_HEADER": ""}, "AUTH_USER_HEADER"),
        ({"AUTH_MODE": "header", "AUTH_USER_HEADER": "X User"}, "AUTH_USER_HEADER"),
    ]


def test_settings_that_cannot_work_fail_at_load(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    for environ, message in settings_error(tmp_path, rsa_key):
        with pytest.raises(StartupError, match=message):  # ConfigError, or a range check's StartupError
            load(**environ)
        # nor can the middleware be built from them directly (a Config made without load)
        unchecked = config.Config(**{s.field: type(s.default)(environ.get(s.env, s.default)) for s in config.SETTINGS})
        with pytest.raises(config.ConfigError, match=message):
            Authentication(unchecked)
    with pytest.raises(config.ConfigError) as secret_error:
        load(AUTH_MODE="jwt", JWT_SECRET="short-secret")
    assert "short-secret" not in str(secret_error.value)  # the secret is never in a message


def test_bad_settings_stop_the_server_at_start() -> None:
    """`python -m http_server` exits at once, naming the setting, rather than serving 500s."""
    port = free_port()
    argv = [sys.executable, "-m", "http_server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    for env, message in [({"AUTH_MODE": "bogus"}, "AUTH_MODE"), ({"AUTH_MODE": "jwt"}, "exactly one of JWT_SECRET")]:
        done = subprocess.run(
            argv, env={"PATH": "/usr/bin:/bin", **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


# --- a real gunicorn ------------------------------------------------------------


@pytest.fixture
def jwt_http(tmp_path: Path, stack: Stack) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path, stack.rpc.port, workers=1, AUTH_MODE="jwt", JWT_SECRET=SECRET)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_gunicorn_with_jwt(jwt_http: HttpServer) -> None:
    url = jwt_http.url + "/api/pull"
    query = {"chat": "alice-auth:bob-auth"}
    r = requests.get(url, params=query, timeout=10)
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["code"] == 401 and r.json()["msg"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")

    expired = jwt.encode(claims(exp=int(time.time()) - 3600), SECRET)
    r = requests.get(url, params=query, headers=bearer(expired), timeout=10)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert expired.split(".")[2] not in r.text

    token = jwt.encode(claims(sub="alice-auth"), SECRET)
    r = requests.get(url, params=query, headers=bearer(token), timeout=10)
    assert r.status_code != 401, r.text
    assert r.status_code < 500, r.text
    r.json()  # JSON, whatever the RPC service decided

    assert requests.get(jwt_http.url + "/healthz", timeout=10).status_code == 200  # open
