"""Launch validation cost, side by side with a raw verify and with pylti1p3.

Every row validates the same RS256 launch token (about 1.5 KB), in one
process, with nothing on the network. The rows run in rounds; each round runs
every row for ``--batch`` iterations and the order of the rows rotates from
round to round, so drift in machine load hits every row alike. Each iteration
is timed on its own; the table prints the median and the 90th percentile in
microseconds and the ratios of the medians against the hand-written minimum
and against pylti1p3 with its keys cached.

Rows:

1. raw RS256 verify: one ``cryptography`` RSA verify of the token's signing
   input, with the key loaded and the signature decoded beforehand;
2. hand-written minimum: split, base64 and JSON for header and payload, the
   verify, then iss, aud, exp, iat, nonce (consumed from a dict), deployment,
   version, message type and target_link_uri; written in this script;
3. ours, ``LaunchValidator.validate``: warm key cache, ``MemoryNonceStore``;
   before each iteration, outside the timed region, a fresh state and its
   login record are issued into the store and the token's nonce is issued
   again for that state, as a login does;
4. pylti1p3 2.0.0, keys cached: ``MessageLaunch(...).validate()`` with the key
   set given in its tool config (``key_set``), so it fetches nothing;
5. pylti1p3 2.0.0, its default: it fetches the key set on every launch. The
   key set is served by an in-process fake ``requests`` adapter, so the row
   counts the ``requests`` machinery and the JSON, but no network latency.

Two more rows show what the same token costs through PyJWT 2.15: ``jwt.decode``
(signature and the registered claims) and ``PyJWS().decode`` (signature only,
the path the middleware used before ``lti_middleware.jws``).

Run: ``python benchmarks/validation.py [--rounds 20] [--batch 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httpx
import jwt
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.registration import TKeySet
from pylti1p3.request import Request as PyltiRequest
from pylti1p3.session import SessionService
from pylti1p3.tool_config.dict import ToolConfDict

from lti_middleware import claims as c
from lti_middleware.config import Registration, ToolConfig
from lti_middleware.keys import generate_key
from lti_middleware.launch import (
    LaunchValidator,
    nonce_key,
    state_key,
)
from lti_middleware.login import LoginRecord, state_cookie_name
from lti_middleware.platform_keys import PlatformKeySets
from lti_middleware.stores.memory import MemoryNonceStore

ISS = "https://lms.example.edu"
CLIENT_ID = "10000000000042"
DEPLOYMENT_ID = "1:8865aa05b4b79b64a91a86042e43af5ea8ae79eb"
KEY_SET_URL = ISS + "/api/lti/security/jwks"
TARGET = "https://tool.example.org/course/quiz"
NONCE = "b1f0c5f3-8d2e-4b7a-9f55-0c7e2a1d6e93"

Sample = Callable[[], Coroutine[Any, Any, float]]


# --- the token ----------------------------------------------------------------


def launch_claims(now: int) -> dict[str, Any]:
    """A resource link launch with the claims most launches carry, ~2 KB signed."""
    return {
        "iss": ISS,
        "aud": CLIENT_ID,
        "sub": "535fa085-4e5a-4bbf-9b25-5b0b0b0b0b0b",
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "name": "Ada Lovelace",
        "email": "ada.lovelace@example.edu",
        c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
        c.VERSION: "1.3.0",
        c.DEPLOYMENT_ID: DEPLOYMENT_ID,
        c.TARGET_LINK_URI: TARGET,
        c.RESOURCE_LINK: {"id": "f3a9c3f2-5b1e-4c8e", "title": "Week 3 quiz"},
        c.ROLES: [c.MEMBERSHIP_ROLE + "Learner"],
        c.CONTEXT: {"id": "4dde05e8ca1973bc", "label": "BIO101", "title": "Biology"},
        c.AGS_ENDPOINT: {
            "scope": [
                "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
                "https://purl.imsglobal.org/spec/lti-ags/scope/score",
            ],
            "lineitems": "https://lms.example.edu/api/lti/courses/5/line_items",
            "lineitem": "https://lms.example.edu/api/lti/courses/5/line_items/9",
        },
        c.NRPS_SERVICE: {
            "context_memberships_url": (
                "https://lms.example.edu/api/lti/courses/5/names_and_roles"
            ),
            "service_versions": ["2.0"],
        },
    }


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- row 2: the hand-written minimum ------------------------------------------


class Minimal:
    """The least a correct launch validation does, with no library around it."""

    def __init__(self, public_key: rsa.RSAPublicKey, kid: str) -> None:
        self.keys = {kid: public_key}
        self.nonces: dict[str, str] = {}

    def validate(self, token: str, state: str, now: float) -> dict[str, Any]:
        head, body, signature = token.split(".")
        header = json.loads(b64decode(head))
        if header.get("alg") != "RS256":
            raise ValueError("alg")
        key = self.keys[header["kid"]]
        key.verify(
            b64decode(signature),
            f"{head}.{body}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        claims: dict[str, Any] = json.loads(b64decode(body))
        aud = claims["aud"]
        if claims["iss"] != ISS or CLIENT_ID not in (
            [aud] if type(aud) is str else aud
        ):
            raise ValueError("iss/aud")
        if not claims["exp"] + 60 >= now >= claims["iat"] - 60:
            raise ValueError("times")
        issued_for = self.nonces.pop(claims["nonce"], None)
        if issued_for is None or not hmac.compare_digest(issued_for, state):
            raise ValueError("nonce")
        if (
            claims[c.DEPLOYMENT_ID] != DEPLOYMENT_ID
            or claims[c.VERSION] != "1.3.0"
            or claims[c.MESSAGE_TYPE] != c.RESOURCE_LINK_REQUEST
            or claims[c.TARGET_LINK_URI] != TARGET
            or not claims[c.RESOURCE_LINK]["id"]
            or not isinstance(claims[c.ROLES], list)
        ):
            raise ValueError("message")
        return claims


# --- rows 4 and 5: pylti1p3 ---------------------------------------------------


class FakeRequest(PyltiRequest):
    """A request as pylti1p3 sees it: POST params and a session dict."""

    def __init__(self, params: dict[str, str], session: dict[str, Any]) -> None:
        self._params = params
        self._session = session

    @property
    def session(self) -> dict[str, Any]:
        return self._session

    def is_secure(self) -> bool:
        return True

    def get_param(self, key: str) -> str:
        return self._params.get(key, "")


class FakeCookies:
    def __init__(self, cookies: dict[str, str]) -> None:
        self._cookies = cookies

    def get_cookie(self, name: str) -> str | None:
        return self._cookies.get("lti1p3-" + name)

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        self._cookies["lti1p3-" + name] = str(value)


class Launch(MessageLaunch):  # type: ignore[type-arg]
    """pylti1p3's framework adapters only add this one method."""

    def _get_request_param(self, key: str) -> str:
        return str(self._request.get_param(key))


class KeySetAdapter(requests.adapters.BaseAdapter):
    """Answers every request with the key set, in process."""

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self.body = json.dumps(document).encode()
        self.count = 0

    def send(  # type: ignore[override]
        self, request: Any, **kwargs: Any
    ) -> requests.Response:
        self.count += 1
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "application/json"
        response._content = self.body
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def pylti_config(key_set: TKeySet | None) -> ToolConfDict:
    return ToolConfDict(
        {
            ISS: [
                {
                    "default": True,
                    "client_id": CLIENT_ID,
                    "auth_login_url": ISS + "/api/lti/authorize_redirect",
                    "auth_token_url": ISS + "/login/oauth2/token",
                    "key_set_url": KEY_SET_URL,
                    "key_set": key_set,
                    "deployment_ids": [DEPLOYMENT_ID],
                }
            ]
        }
    )


def pylti_sample(
    token: str, config: ToolConfDict, session: requests.Session
) -> Callable[[], float]:
    def sample() -> float:
        # What its login leaves behind: the state cookie and the nonce.
        state = "state-" + uuid.uuid4().hex
        request = FakeRequest({"id_token": token, "state": state}, {})
        cookies = FakeCookies({"lti1p3-" + state: state})
        request.session["lti1p3-nonce-" + NONCE] = True
        started = time.perf_counter()
        Launch(
            request,
            config,
            session_service=SessionService(request),
            cookie_service=cookies,
            requests_session=session,
        ).validate()
        return time.perf_counter() - started

    return sample


# --- the bench ----------------------------------------------------------------


class Bench:
    def __init__(self) -> None:
        platform_key = generate_key()
        self.jwk = platform_key.public_jwk()
        self.kid = platform_key.kid
        self.token = jwt.encode(
            launch_claims(int(time.time())),
            platform_key.private_key,
            algorithm="RS256",
            headers={"kid": self.kid},
        )
        self.public_key = platform_key.private_key.public_key()
        self.pyjwk = jwt.PyJWK(self.jwk)
        head, body, signature = self.token.split(".")
        self.signing_input = f"{head}.{body}".encode()
        self.signature = b64decode(signature)
        self.minimal = Minimal(self.public_key, self.kid)

        document = {"keys": [self.jwk]}
        http = httpx.AsyncClient(
            transport=httpx.MockTransport(
                lambda request: httpx.Response(200, json=document)
            )
        )
        self.http = http
        self.key_sets = PlatformKeySets(http)
        self.config = ToolConfig(
            login_url="https://tool.example.org/lti/login",
            launch_url="https://tool.example.org/lti/launch",
            jwks_url="https://tool.example.org/lti/jwks",
            registrations=(
                Registration(
                    issuer=ISS,
                    client_id=CLIENT_ID,
                    deployment_ids=(DEPLOYMENT_ID,),
                    auth_login_url=ISS + "/api/lti/authorize_redirect",
                    token_url=ISS + "/login/oauth2/token",
                    key_set_url=KEY_SET_URL,
                ),
            ),
        )
        self.nonces = MemoryNonceStore()
        self.validator = LaunchValidator(
            config=self.config, key_sets=self.key_sets, nonces=self.nonces
        )

        cached_session = requests.Session()
        cached_session.mount("https://", KeySetAdapter(document))
        self.fetching = KeySetAdapter(document)
        fetch_session = requests.Session()
        fetch_session.mount("https://", self.fetching)
        pylti_cached = pylti_sample(
            self.token, pylti_config(cast(TKeySet, document)), cached_session
        )
        pylti_fetch = pylti_sample(self.token, pylti_config(None), fetch_session)

        self.rows: dict[str, Sample] = {
            "raw RS256 verify (cryptography)": self.wrap(self.raw_verify),
            "hand-written minimal validation": self.wrap(self.minimal_sample),
            "ours: LaunchValidator.validate": self.ours_sample,
            "pylti1p3, keys cached": self.wrap(pylti_cached),
            "pylti1p3, key set fetched per launch": self.wrap(pylti_fetch),
            "PyJWT jwt.decode (+ registered claims)": self.wrap(self.jwt_decode),
            "PyJWT PyJWS().decode (signature only)": self.wrap(self.jws_decode),
        }
        self.jws = jwt.PyJWS()

    @staticmethod
    def wrap(sample: Callable[[], float]) -> Sample:
        async def run() -> float:
            return sample()

        return run

    def raw_verify(self) -> float:
        started = time.perf_counter()
        self.public_key.verify(
            self.signature, self.signing_input, padding.PKCS1v15(), hashes.SHA256()
        )
        return time.perf_counter() - started

    def minimal_sample(self) -> float:
        state = uuid.uuid4().hex
        self.minimal.nonces[NONCE] = state
        started = time.perf_counter()
        self.minimal.validate(self.token, state, time.time())
        return time.perf_counter() - started

    async def issue(self) -> tuple[dict[str, str], dict[str, str]]:
        """What our login stores, so the next launch with the token is valid."""
        state = uuid.uuid4().hex
        binding = uuid.uuid4().hex
        record = LoginRecord(
            issuer=ISS,
            client_id=CLIENT_ID,
            target_link_uri=TARGET,
            nonce=NONCE,
            binding=binding,
        )
        await self.nonces.issue(state_key(state), record.to_json(), 600)
        await self.nonces.issue(nonce_key(NONCE), state, 600)
        return {"id_token": self.token, "state": state}, {
            state_cookie_name(state): binding
        }

    async def ours_sample(self) -> float:
        form, cookies = await self.issue()
        started = time.perf_counter()
        await self.validator.validate(form, cookies)
        return time.perf_counter() - started

    def jwt_decode(self) -> float:
        started = time.perf_counter()
        jwt.decode(self.token, self.pyjwk, algorithms=["RS256"], audience=CLIENT_ID)
        return time.perf_counter() - started

    def jws_decode(self) -> float:
        started = time.perf_counter()
        self.jws.decode(self.token, self.pyjwk, algorithms=["RS256"])
        return time.perf_counter() - started

    async def check(self) -> None:
        """Every row accepts the token before anything is timed."""
        for sample in self.rows.values():
            await sample()
        if self.fetching.count != 1 or self.key_sets.fetch_count != 1:
            raise SystemExit("unexpected key set fetch counts")


async def measure(rounds: int, batch: int) -> tuple[Bench, dict[str, list[float]]]:
    bench = Bench()
    await bench.check()
    names = list(bench.rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            sample = bench.rows[name]
            for _ in range(batch):
                times[name].append(await sample())
    await bench.http.aclose()
    return bench, times


NOTES = """\
notes
  ours: state, cookie binding, header, key, signature, iss/aud/azp, exp/iat/nbf
    with max age and lifetime, nonce consumed and tied to the state, deployment,
    version, message type, required claims and their shapes, target_link_uri.
    Saving the launch (the middleware's next step) is not counted.
  pylti1p3: validate() = state (cookie), JWT format, nonce present in the
    session (not consumed: it stays valid for a replay), registration by iss and
    aud, JWK -> PEM -> key on every launch, jwt.decode (signature, exp, iat,
    nbf; aud not checked), deployment, message validators, and it saves the
    launch data and the state into the session dict (counted). It gets a shared
    requests.Session; its default makes a new one per launch (about 10 us more).
  the fetch-per-launch row serves the key set from a fake requests adapter in
    this process: it counts requests' machinery and JSON, no socket, no latency.
  ours reads the token once with lti_middleware.jws (every per-byte check in
    C) and verifies with PyJWT's algorithm object for the key; the PyJWT rows
    show what reading it through PyJWT 2.15 would cost instead."""


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def report(bench: Bench, times: dict[str, list[float]], rounds: int) -> None:
    medians = {name: statistics.median(v) for name, v in times.items()}
    names = list(times)
    minimal, ours, pylti = names[1], names[2], names[3]
    size = len(bench.token)
    count = len(times[names[0]])
    print(f"launch token: {size} bytes, RS256, RSA-2048; {count} iterations per row")
    print(f"in {rounds} interleaved rounds; one process, no network")
    print()
    print(
        f"{'row':40} {'median us':>10} {'p90 us':>9} {'/minimal':>9} {'/pylti1p3':>10}"
    )
    for name in names:
        median = medians[name]
        print(
            f"{name:40} {median * 1e6:10.1f} {p90(times[name]) * 1e6:9.1f} "
            f"{median / medians[minimal]:8.2f}x {median / medians[pylti]:9.3f}x"
        )
    print()
    to_minimal = medians[ours] / medians[minimal]
    faster = medians[pylti] / medians[ours]
    faster_fetch = medians[names[4]] / medians[ours]
    print("targets (issue 6, point 5)")
    verdict = "met" if to_minimal <= 2 else "MISSED"
    print(f"  ours <= 2x the hand-written minimum : {to_minimal:.2f}x  {verdict}")
    verdict = "met" if faster >= 4 else "MISSED"
    print(f"  ours >= 4x faster than pylti1p3     : {faster:.1f}x  {verdict}")
    print(f"  (against pylti1p3 fetching keys     : {faster_fetch:.1f}x)")
    jws, decode = medians[names[6]], medians[names[5]]
    print(
        f"  PyJWT jwt.decode costs {decode / jws:.2f}x PyJWS().decode; "
        f"PyJWS().decode is {jws / medians[names[0]]:.2f}x the raw verify"
    )
    print()
    print(NOTES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    bench, times = asyncio.run(measure(args.rounds, args.batch))
    report(bench, times, args.rounds)


if __name__ == "__main__":
    main()
