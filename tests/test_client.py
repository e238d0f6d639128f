"""The client: the response policy as one table, URL rules, and the retry schedule.

``classify_response`` is exercised on real ``requests.Response`` objects built by
requests' own adapter from raw HTTP pieces; everything that sends requests runs
over real HTTP against the simulator (see the end of this file).
"""

from __future__ import annotations

import http.server
import io
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from parts.simulators import Simulators
from requests.adapters import HTTPAdapter
from support import FakeTime

from etl.common.errors import (
    AuthError,
    ConfigError,
    CorruptResponseError,
    EtlError,
    ForbiddenError,
    PaginationError,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
    RetryBudgetExhausted,
    UpstreamError,
)
from etl.common.secret import Secret
from etl.common.settings import Credentials, ZendeskSettings
from etl.common.urls import check_base_url, same_origin
from etl.zendesk.auth import BearerAuth
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import audit_log_params
from etl.zendesk.ratelimit import RateLimiter
from etl.zendesk.responses import classify_response
from zendesk_sim import Fault, SimAuth, SimulatedZendesk, generate_records

URL = (
    "https://acme.zendesk.com/api/v2/audit_logs"
    "?filter%5Bcreated_at%5D%5B%5D=2026-01-01T00%3A00%3A00Z&page%5Bafter%5D=SECRETCURSOR"
)
JSON = {"Content-Type": "application/json; charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain"}
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Oops</title></head><body>" + b"x" * 5000


def make_response(status: int, headers: dict[str, str], body: bytes | str) -> requests.Response:
    raw_body = body.encode() if isinstance(body, str) else body
    prepared = requests.Request("GET", URL).prepare()
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(raw_body),
        headers=headers,
        status=status,
        preload_content=False,
        reason=None,
    )
    return HTTPAdapter().build_response(prepared, raw)


def js(payload: Any) -> str:
    return json.dumps(payload)


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    body: bytes | str
    headers: dict[str, str]
    error: type[EtlError] | None  # None: the body comes back
    says: tuple[str, ...] = ()  # fragments the message must contain
    retry_after: float | None = None


OK_BODY = {"audit_logs": [], "meta": {"has_more": False}}
CASES = [
    Case("200-json", 200, js(OK_BODY), JSON, None),
    Case("200-empty", 200, b"", JSON, CorruptResponseError, ("empty body",)),
    Case("200-html", 200, HTML_PAGE, HTML, CorruptResponseError, ("HTML",)),
    Case(
        "200-truncated", 200, '{"audit_logs": [{"id": 1', JSON, CorruptResponseError, ("truncated",)
    ),
    Case("200-list", 200, "[1, 2]", JSON, CorruptResponseError, ("not an object",)),
    Case("200-null", 200, "null", JSON, CorruptResponseError, ("not an object",)),
    Case("200-text", 200, "ok", TEXT, CorruptResponseError, ("not JSON",)),
    Case(
        "429-retry-after",
        429,
        "Too Many Requests",
        {**TEXT, "Retry-After": "7"},
        RateLimitedError,
        ("429",),
        7.0,
    ),
    Case("429-no-header", 429, "", TEXT, RateLimitedError, ("429",), 10.0),
    Case("429-garbage", 429, "", {"Retry-After": "later"}, RateLimitedError, (), 10.0),
    Case(
        "429-json",
        429,
        js({"error": "TooMany"}),
        {**JSON, "Retry-After": "2"},
        RateLimitedError,
        (),
        2.0,
    ),
    Case(
        "503-retry-after",
        503,
        js({"error": "DatabaseTimeout"}),
        {**JSON, "Retry-After": "30"},
        RateLimitedError,
        ("503",),
        30.0,
    ),
    Case("503-plain", 503, js({"error": "DatabaseTimeout"}), JSON, RetriableError, ("503",)),
    Case("500", 500, js({"error": "InternalServerError"}), JSON, RetriableError, ("500",)),
    Case("502-html", 502, HTML_PAGE, HTML, RetriableError, ("502",)),
    Case("504-text", 504, "Gateway Timeout", TEXT, RetriableError, ("504",)),
    Case("408", 408, "", TEXT, RetriableError, ("408",)),
    Case(
        "401",
        401,
        js({"error": "Couldn't authenticate you"}),
        JSON,
        AuthError,
        ("401", "Couldn't authenticate you", "OAuth access token", "check"),
    ),
    Case(
        "401-invalid-token",
        401,
        js({"error": "invalid_token", "error_description": "The access token is expired"}),
        JSON,
        AuthError,
        ("invalid_token", "expired"),
    ),
    Case(
        "403-scope",
        403,
        js(
            {
                "error": "Forbidden",
                "description": "You are missing the following required scopes: read",
            }
        ),
        JSON,
        ForbiddenError,
        ("403", "Enterprise", "admin", "auditlogs:read", "missing the following required scopes"),
    ),
    Case("403-html", 403, HTML_PAGE, HTML, ForbiddenError, ("403", "Enterprise")),
    Case(
        "400-filter",
        400,
        js({"error": "InvalidValue", "description": "Invalid filter[created_at] specified"}),
        JSON,
        RequestRejectedError,
        ("400", "InvalidValue", "Invalid filter[created_at]"),
    ),
    Case(
        "400-cursor",
        400,
        js({"error": "InvalidPaginationParameter", "description": "bad cursor"}),
        JSON,
        RequestRejectedError,
        ("InvalidPaginationParameter", "checkpoint"),
    ),
    Case(
        "400-text",
        400,
        "Bad request\n\nreally",
        TEXT,
        RequestRejectedError,
        ("Bad request really",),
    ),
    Case(
        "404-json",
        404,
        js({"error": "RecordNotFound", "description": "Not found"}),
        JSON,
        RequestRejectedError,
        ("404", "base_url"),
    ),
    Case("404-html", 404, HTML_PAGE, HTML, RequestRejectedError, ("404", "base_url")),
    Case(
        "302-foreign",
        302,
        "",
        {"Location": "https://evil.example.net/login"},
        RequestRejectedError,
        ("302", "evil.example.net", "not followed"),
    ),
    Case("301-relative", 301, "", {"Location": "/other"}, RequestRejectedError, ("same host",)),
    Case("422", 422, js({"error": "UnprocessableEntity"}), JSON, RequestRejectedError, ("422",)),
    Case("409", 409, "", TEXT, RequestRejectedError, ("409",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classify_response(case: Case) -> None:
    response = make_response(case.status, case.headers, case.body)
    auth = BearerAuth(Secret("tok-SECRET"))
    if case.error is None:
        assert classify_response(response, auth=auth) == OK_BODY
        return
    with pytest.raises(case.error) as caught:
        classify_response(response, auth=auth)
    assert type(caught.value) is case.error
    message = str(caught.value)
    for fragment in case.says:
        assert fragment in message
    assert message.startswith("GET https://acme.zendesk.com/api/v2/audit_logs?")
    assert "\n" not in message
    assert len(message) < 400
    assert "SECRETCURSOR" not in message
    assert "tok-SECRET" not in message
    assert "<html" not in message.lower()
    if case.retry_after is not None:
        assert isinstance(caught.value, RateLimitedError)
        assert caught.value.retry_after == case.retry_after


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (JSON, '{"id": 6139157572367, "name": "Zoë 😀", "n": null}', None),
        (JSON, '{"id": 123456789012345678901234567890}', None),  # no float, whatever the size
        (JSON, '{"id": -18446744073709551616, "t": "ok"}', None),
        (JSON, '{"id": 1, "score": NaN}', None),  # kept for parse_record to reject
        (JSON, '{"a": "\\ud800"}', None),  # a lone surrogate, for parse_record to replace
        ({"Content-Type": "application/json; charset=iso-8859-1"}, "{}", {}),
        (JSON, '\ufeff{"a": "é"}', {"a": "é"}),  # a byte order mark, which RFC 8259 allows
    ],
    ids=["plain", "past-64-bits", "past-64-bits-negative", "nan", "surrogate", "latin-1", "bom"],
)  # fmt: skip
def test_json_bodies_decode_to_what_the_json_module_makes(
    headers: dict[str, str], body: str, expected: dict[str, Any] | None
) -> None:
    data = body.encode("utf-8", "surrogatepass")
    decoded = classify_response(make_response(200, headers, data))
    want = json.loads(body) if expected is None else expected
    assert repr(decoded) == repr(want)  # repr: NaN != NaN, and 1e29 == 10**29


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=iso-8859-1",
        "text/plain",
        "text/html",
        "application/json; charset=windows-1252",
        "application/octet-stream",
    ],
)
def test_a_body_is_utf8_whatever_charset_it_declares(content_type: str) -> None:
    """JSON is UTF-8 (RFC 8259): a declared charset would only turn "→" into mojibake."""
    body = '{"a": "é → 😀", "audit_logs": []}'.encode()
    decoded = classify_response(make_response(200, {"Content-Type": content_type}, body))
    assert decoded == {"a": "é → 😀", "audit_logs": []}


@pytest.mark.parametrize(
    "body",
    [
        b'{"change_descr\xff\xfeiption": "x"}',  # bytes no UTF-8 text has
        b'{"a": "\xe2\x86"}',  # a character cut in the middle
        b'{"a": "\xc3\xa9", "b": "\xe9"}',  # Latin-1 among UTF-8
        '{"a": "é"}'.encode("utf-16"),
        b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate
        b'{"a": "\xc0\xaf"}',  # an overlong encoding
    ],
    ids=["ff-fe", "cut-character", "latin-1-byte", "utf-16", "surrogate-bytes", "overlong"],
)
def test_a_body_that_is_not_utf8_is_corrupt(body: bytes) -> None:
    """Never decoded with U+FFFD in place of the bad bytes (requests' lenient .json())."""
    for content_type in ("application/json", "application/json; charset=utf-8", "text/plain"):
        with pytest.raises(CorruptResponseError, match=r"not valid UTF-8|malformed|not JSON"):
            classify_response(make_response(200, {"Content-Type": content_type}, body))


def test_digits_past_64_bits_in_a_bad_body_are_still_strict() -> None:
    # The json-module path (a 20-digit integer) is strict about UTF-8 too.
    body = b'{"id": 123456789012345678901, "a": "\xff"}'
    with pytest.raises(CorruptResponseError, match="not valid UTF-8"):
        classify_response(make_response(200, JSON, body))


def test_a_huge_error_body_is_cut_to_a_snippet() -> None:
    body = js({"error": "InvalidValue", "description": "y" * 10_000})
    with pytest.raises(RequestRejectedError) as caught:
        classify_response(make_response(400, JSON, body))
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("base_url", "ok"),
    [
        ("https://acme.zendesk.com", True),
        ("https://acme.zendesk.com/", True),
        ("https://proxy.internal:8443/zendesk", True),
        ("http://127.0.0.1:8080", True),
        ("http://127.8.9.10", True),
        ("http://[::1]:9000", True),
        ("http://localhost:9000", True),
        ("http://acme.zendesk.com", False),
        ("http://10.0.0.1", False),
        ("ftp://acme.zendesk.com", False),
        ("acme.zendesk.com", False),
        ("https://user:pw@acme.zendesk.com", False),
        ("https://acme.zendesk.com/?x=1", False),
    ],
)
def test_base_url_rules(base_url: str, ok: bool) -> None:
    if ok:
        assert not check_base_url(base_url).endswith("/")
    else:
        with pytest.raises(ConfigError) as caught:
            check_base_url(base_url)
        assert "pw" not in str(caught.value)


def test_same_origin() -> None:
    base = "https://acme.zendesk.com/prefix"
    assert same_origin("https://ACME.zendesk.com:443/api/v2/x?y=1", base)
    assert not same_origin("http://acme.zendesk.com/api", base)
    assert not same_origin("https://acme.zendesk.com:8443/api", base)
    assert not same_origin("https://acme.zendesk.com.evil.net/api", base)
    assert not same_origin("not a url", base)


SETTINGS = ZendeskSettings(
    base_url="https://acme.zendesk.com",
    credentials=Credentials(oauth_token=Secret("tok")),
)


def test_credentials_never_go_to_another_host() -> None:
    with ZendeskClient(SETTINGS) as client, pytest.raises(PaginationError, match="refusing"):
        client.get_json("https://elsewhere.example.com/api/v2/audit_logs")


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="plain http"):
        ZendeskClient(replace(SETTINGS, base_url="http://acme.zendesk.com"))


def test_tls_verification_cannot_be_switched_off() -> None:
    session = requests.Session()
    session.verify = False
    with pytest.raises(ConfigError, match="TLS"):
        ZendeskClient(SETTINGS, session=session)


def test_paths_join_the_base_url() -> None:
    with ZendeskClient(replace(SETTINGS, base_url="https://proxy.internal/zd/")) as client:
        assert client.resolve("/api/v2/audit_logs") == "https://proxy.internal/zd/api/v2/audit_logs"
        assert client.resolve("api/v2/x") == "https://proxy.internal/zd/api/v2/x"
        assert (
            client.resolve("https://proxy.internal/zd/api?x=1")
            == "https://proxy.internal/zd/api?x=1"
        )


# -- over real HTTP, against the simulator ---------------------------------------------------


START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2025, 6, 2, tzinfo=UTC)
PATH = "/api/v2/audit_logs"
PARAMS = audit_log_params(START, END, {}, page_size=10)


@pytest.fixture
def sim(make_sim: Simulators) -> SimulatedZendesk:
    return make_sim(generate_records(40, start=START, end=END))


API_TOKEN = Credentials(email="admin@example.com", api_token=Secret("sim-api-token"))


def sim_client(
    sim: SimulatedZendesk,
    fake: FakeTime,
    credentials: Credentials = API_TOKEN,
    **settings: Any,
) -> ZendeskClient:
    options: dict[str, Any] = {"requests_per_minute": 600, "timeout": 2.0, **settings}
    return ZendeskClient(
        ZendeskSettings(base_url=sim.url, credentials=credentials, **options),
        sleep=fake.sleep,
        clock=fake.clock,
        jitter=lambda: 0.5,
    )


@pytest.mark.parametrize(
    "credentials",
    [
        API_TOKEN,
        Credentials(email="admin@example.com", password=Secret("sim-password")),
        Credentials(oauth_token=Secret("sim-oauth-token")),
        Credentials(client_id="sim-client", client_secret=Secret("sim-client-secret")),
    ],
    ids=["api-token", "password", "oauth-token", "client-credentials"],
)
def test_every_auth_method_reads_a_page(sim: SimulatedZendesk, credentials: Credentials) -> None:
    with sim_client(sim, FakeTime(), credentials) as client:
        body = client.get_json(PATH, PARAMS)
    assert len(body["audit_logs"]) == 10
    assert client.stats.requests == 1


def test_requests_carry_the_user_agent_and_no_redirects(sim: SimulatedZendesk) -> None:
    seen: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, **_: seen.append(r.request))
    settings = ZendeskSettings(base_url=sim.url, credentials=API_TOKEN)
    with ZendeskClient(settings, session=session) as client:
        client.get_json(PATH, PARAMS)
    assert seen[0].headers["User-Agent"].startswith("zendesk-audit-etl/")
    assert seen[0].url is not None and "page%5Bsize%5D=10" in seen[0].url


def test_503_with_retry_after_waits_exactly_that(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(Fault("status", status=503, retry_after=4))
    with sim_client(sim, fake) as client:
        body = client.get_json(PATH, PARAMS)
    assert body["audit_logs"]
    assert fake.sleeps == [4.0]
    assert client.stats.retries == 1
    assert client.stats.rate_limited == 0
    assert client.limiter.pauses == 1
    assert [r.status for r in sim.requests] == [503, 200]


def test_429_pauses_and_counts(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(Fault("status", status=429, retry_after=3, times=2))
    with sim_client(sim, fake) as client:
        client.get_json(PATH, PARAMS)
    assert fake.sleeps == [3.0, 3.0]
    assert client.stats.rate_limited == 2
    assert client.stats.retries == 2
    assert client.stats.waited == 6.0


def test_429_without_retry_after_waits_ten_seconds(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(Fault("status", status=429))
    with sim_client(sim, fake) as client:
        client.get_json(PATH, PARAMS)
    assert fake.sleeps == [10.0]


def test_server_errors_back_off_exponentially_with_jitter(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(Fault("status", status=500, times=2), Fault("status", status=502), Fault("html"))
    with sim_client(sim, fake) as client:
        client.get_json(PATH, PARAMS)
    # b = 1, 2, 4, 8; jitter 0.5 -> b/2 + b/4
    assert fake.sleeps == [0.75, 1.5, 3.0, 6.0]
    assert client.stats.requests == 5


@pytest.mark.parametrize(
    "fault",
    [Fault("reset"), Fault("truncate"), Fault("html", status=503), Fault("slow", delay=1.0)],
    ids=["reset", "truncate", "html", "slow"],
)
def test_transport_and_body_failures_are_retried(
    sim: SimulatedZendesk, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTime()
    sim.inject(fault)
    with sim_client(sim, fake, timeout=0.3) as client:
        body = client.get_json(PATH, PARAMS)
    assert len(body["audit_logs"]) == 10
    assert fake.sleeps == [0.75]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "etl.zendesk.client" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 1
    assert "retry 1 in 0.8 s" in warnings[0]
    assert "sim-api-token" not in caplog.text


def test_the_retry_budget_ends_in_one_clear_error(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(Fault("status", status=500, times=-1))
    # jitter 0.5: waits 0.75, 1.5, 3.0 (5.25 s in all); 5.25 + 6.0 would pass 10 s
    client = sim_client(sim, fake, retry_budget=10.0)
    with client, pytest.raises(RetryBudgetExhausted) as caught:
        client.get_json(PATH, PARAMS)
    message = str(caught.value)
    assert fake.sleeps == [0.75, 1.5, 3.0]
    assert "gave up after 4 attempts in 5 s (retry budget 10 s)" in message
    assert "500 Internal Server Error" in message
    assert "\n" not in message


def test_a_retry_after_beyond_the_budget_gives_up_at_once(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    sim.inject(Fault("status", status=429, retry_after=600))
    with sim_client(sim, fake, retry_budget=300.0) as client:
        with pytest.raises(RetryBudgetExhausted, match="429"):
            client.get_json(PATH, PARAMS)
        assert fake.sleeps == []
        assert client.stats.rate_limited == 1


def test_a_dead_server_exhausts_the_budget() -> None:
    with SimulatedZendesk() as dead:
        url = dead.url
    fake = FakeTime()
    settings = ZendeskSettings(base_url=url, credentials=API_TOKEN, retry_budget=5.0, timeout=1.0)
    client = ZendeskClient(settings, sleep=fake.sleep, clock=fake.clock, jitter=lambda: 1.0)
    with client, pytest.raises(RetryBudgetExhausted, match="connection refused"):
        client.get_json(PATH, PARAMS)
    assert fake.sleeps == [1.0, 2.0]


def test_wrong_credentials_fail_at_once_naming_the_method(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    wrong = Credentials(email="admin@example.com", api_token=Secret("WRONG-SECRET"))
    with sim_client(sim, fake, wrong) as client, pytest.raises(AuthError) as caught:
        client.get_json(PATH, PARAMS)
    message = str(caught.value)
    assert "401" in message and "API token for admin@example.com" in message
    assert "WRONG-SECRET" not in message
    assert len(sim.requests) == 1 and fake.sleeps == []


def test_a_non_admin_gets_the_plan_and_role_hint() -> None:
    records = generate_records(5, start=START, end=END)
    with (
        SimulatedZendesk(records, auth=SimAuth(admin=False)) as s,
        sim_client(s, FakeTime()) as client,
        pytest.raises(AuthError) as caught,
    ):
        client.get_json(PATH, PARAMS)
    assert "403" in str(caught.value) and "Enterprise" in str(caught.value)


def test_a_bad_filter_is_rejected_with_zendesks_words(sim: SimulatedZendesk) -> None:
    params = [("filter[created_at][]", "2025-06-01"), ("page[size]", "10")]
    with sim_client(sim, FakeTime()) as client, pytest.raises(RequestRejectedError) as caught:
        client.get_json(PATH, params)
    assert "400" in str(caught.value) and "filter[created_at]" in str(caught.value)


def test_a_wrong_path_is_a_404_hint(sim: SimulatedZendesk) -> None:
    with sim_client(sim, FakeTime()) as client, pytest.raises(RequestRejectedError, match="404"):
        client.get_json("/api/v2/audit_log", PARAMS)


def test_the_accounts_limit_in_the_headers_holds_a_budget_above_it() -> None:
    # The simulator's minute shortened to 2 s (the job's limiter told so): 10 a window,
    # while the job's budget is 600; 15 requests cross into the next window.
    records = generate_records(5, start=START, end=END)
    with SimulatedZendesk(records, rate_limit_per_minute=10, rate_limit_window=2.0) as s:
        settings = ZendeskSettings(
            base_url=s.url, credentials=API_TOKEN, requests_per_minute=600, timeout=2.0
        )
        with ZendeskClient(settings, limiter=RateLimiter(600, window=2.0)) as client:
            for _ in range(15):
                client.get_json(PATH, PARAMS)
            assert client.limiter.paced
        assert s.stats()["rate_limited"] == 0


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[str]:
    """An https server on loopback whose certificate no CA vouches for."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_certificate_that_does_not_verify_is_fatal_at_once(self_signed_https: str) -> None:
    settings = ZendeskSettings(base_url=self_signed_https, credentials=API_TOKEN)
    fake = FakeTime()
    client = ZendeskClient(settings, sleep=fake.sleep, clock=fake.clock)
    with client, pytest.raises(UpstreamError, match="certificate does not verify") as caught:
        client.get_json(PATH, PARAMS)
    assert not isinstance(caught.value, RetriableError | RetryBudgetExhausted)
    assert fake.sleeps == []


def test_threads_share_one_client(sim: SimulatedZendesk) -> None:
    credentials = Credentials(client_id="sim-client", client_secret=Secret("sim-client-secret"))
    settings = ZendeskSettings(base_url=sim.url, credentials=credentials, requests_per_minute=6000)
    errors: list[BaseException] = []
    with ZendeskClient(settings) as client:

        def work() -> None:
            try:
                for _ in range(3):
                    client.get_json(PATH, PARAMS)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert client.stats.requests == 18
    assert client.auth.fetches == 1  # type: ignore[attr-defined]


def test_a_worker_client_shares_the_budget_and_the_auth(sim: SimulatedZendesk) -> None:
    fake = FakeTime()
    with sim_client(sim, fake) as client:
        worker = client.worker()
        assert worker.limiter is client.limiter
        assert worker.auth is client.auth
        worker.get_json(PATH, PARAMS)
        client.get_json(PATH, PARAMS)
        assert client.limiter.acquired == 2  # both requests drew from one budget
        assert (worker.stats.requests, client.stats.requests) == (1, 1)
        worker.close()
