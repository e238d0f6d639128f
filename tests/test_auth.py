"""build_auth: which method wins, what each sends, and that secrets stay hidden.

The OAuth client-credentials flow against a token endpoint is exercised over real
HTTP in the simulator tests at the end of this file.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime

import pytest
import requests
from loopback import Exchange, LoopbackServer
from parts.clock import FakeClock
from parts.simulators import Simulators
from support import oauth_client

from etl.common.errors import (
    AuthError,
    ConfigError,
    CorruptResponseError,
    ExitCode,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
)
from etl.common.secret import Secret
from etl.common.settings import Credentials
from etl.zendesk.auth import (
    API_TOKEN_NOTICE,
    PASSWORD_NOTICE,
    BasicAuth,
    BearerAuth,
    ClientCredentialsAuth,
    ZendeskAuth,
    build_auth,
)
from etl.zendesk.pagination import audit_log_params
from zendesk_sim import Fault, SimAuth, SimulatedZendesk, generate_records

BASE = "https://acme.zendesk.com"


def header(auth: requests.auth.AuthBase) -> str:
    prepared = requests.Request("GET", BASE + "/api/v2/audit_logs").prepare()
    return str(auth(prepared).headers["Authorization"])


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def build(credentials: Credentials) -> ZendeskAuth:
    return build_auth(credentials, BASE, requests.Session(), 5.0)


ALL = Credentials(
    email="ops@acme.com",
    api_token=Secret("api-SECRET"),
    password=Secret("pw-SECRET"),
    oauth_token=Secret("oauth-SECRET"),
    client_id="etl-client",
    client_secret=Secret("client-SECRET"),
)


def test_precedence_client_credentials_first() -> None:
    assert isinstance(build(ALL), ClientCredentialsAuth)


def test_precedence_then_oauth_token() -> None:
    auth = build(Credentials(**{**ALL.__dict__, "client_id": None, "client_secret": None}))
    assert isinstance(auth, BearerAuth)
    assert header(auth) == "Bearer oauth-SECRET"


def test_precedence_then_api_token() -> None:
    auth = build(Credentials(email="ops@acme.com", api_token=Secret("t"), password=Secret("p")))
    assert isinstance(auth, BasicAuth)
    assert header(auth) == basic("ops@acme.com/token", "t")
    assert auth.method == "API token for ops@acme.com"


def test_password_last() -> None:
    auth = build(Credentials(email="ops@acme.com", password=Secret("p:w")))
    assert header(auth) == basic("ops@acme.com", "p:w")
    assert "password" in auth.method


@pytest.mark.parametrize(
    ("credentials", "complaint"),
    [
        (Credentials(), "no Zendesk credentials"),
        (Credentials(client_id="x"), "client_secret"),
        (Credentials(client_secret=Secret("s")), "client_id"),
        (Credentials(api_token=Secret("t")), "email"),
        (Credentials(password=Secret("p")), "email"),
        (Credentials(oauth_token=Secret("")), "no Zendesk credentials"),
    ],
    ids=["nothing", "id-only", "secret-only", "token-no-email", "password-no-email", "empty"],
)
def test_incomplete_credentials_are_a_config_error(
    credentials: Credentials, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        build(credentials)


def test_reprs_hide_secrets() -> None:
    for credentials in (
        ALL,
        Credentials(oauth_token=Secret("oauth-SECRET")),
        Credentials(email="ops@acme.com", api_token=Secret("api-SECRET")),
        Credentials(email="ops@acme.com", password=Secret("pw-SECRET")),
    ):
        auth = build(credentials)
        text = repr(auth) + str(auth) + repr(vars(auth))
        assert "SECRET" not in text


def test_deprecated_methods_name_their_notice_and_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The library names the notice; only the CLI says it (once a day, see test_cli)."""
    token = build(Credentials(email="ops@acme.com", api_token=Secret("api-SECRET")))
    password = build(Credentials(email="ops@acme.com", password=Secret("pw-SECRET")))
    assert token.notice == API_TOKEN_NOTICE and "2027-04-30" in API_TOKEN_NOTICE.text
    assert password.notice == PASSWORD_NOTICE
    assert len({API_TOKEN_NOTICE.key, PASSWORD_NOTICE.key}) == 2
    assert all(len(n.key) <= 32 for n in (API_TOKEN_NOTICE, PASSWORD_NOTICE))  # its column
    assert build(Credentials(oauth_token=Secret("oauth-SECRET"))).notice is None
    assert caplog.records == []


# -- OAuth client credentials, over real HTTP against the simulator -----------------------
START = datetime(2025, 6, 1, tzinfo=UTC)
END = datetime(2025, 6, 2, tzinfo=UTC)
PARAMS = audit_log_params(START, END, {}, page_size=5)


def oauth(
    sim: SimulatedZendesk,
    clock: FakeClock,
    secret: str = "sim-client-secret",
    scope: str = "read",
) -> tuple[ClientCredentialsAuth, requests.Session]:
    session = requests.Session()
    auth = ClientCredentialsAuth(
        client_id="sim-client",
        client_secret=Secret(secret),
        scope=scope,
        base_url=sim.url,
        session=session,
        timeout=2.0,
        clock=clock,
    )
    return auth, session


def get(sim: SimulatedZendesk, session: requests.Session, auth: ClientCredentialsAuth) -> int:
    response = session.get(sim.url + "/api/v2/audit_logs", params=PARAMS, auth=auth, timeout=5)
    return response.status_code


@pytest.fixture
def sim(make_sim: Simulators) -> SimulatedZendesk:
    return make_sim(generate_records(20, start=START, end=END), auth=SimAuth(token_ttl=120.0))


def token_requests(sim: SimulatedZendesk) -> int:
    return sum(1 for r in sim.requests if r.path == "/oauth/tokens")


def test_the_token_is_fetched_once_and_reused(sim: SimulatedZendesk) -> None:
    auth, session = oauth(sim, FakeClock(0.0))
    assert [get(sim, session, auth) for _ in range(4)] == [200] * 4
    assert auth.fetches == 1
    assert token_requests(sim) == 1


def test_the_token_is_renewed_shortly_before_it_expires(sim: SimulatedZendesk) -> None:
    clock = FakeClock(0.0)
    auth, session = oauth(sim, clock)
    assert get(sim, session, auth) == 200
    clock.now = 120 - 12 - 0.5  # expires_in 120 s; renewed 12 s (a tenth) before
    assert get(sim, session, auth) == 200
    assert auth.fetches == 1
    clock.now = 120 - 12
    assert get(sim, session, auth) == 200
    assert auth.fetches == 2


def test_a_401_renews_the_token_once_and_resends() -> None:
    records = generate_records(5, start=START, end=END)
    # Long enough for the first request to use the token on a busy machine.
    with SimulatedZendesk(records, auth=SimAuth(token_ttl=2.0)) as server:
        auth, session = oauth(server, FakeClock(0.0))  # our clock never sees it expire
        assert get(server, session, auth) == 200
        time.sleep(2.1)  # the token's lifetime passing is the event: this is its length
        assert get(server, session, auth) == 200
        assert auth.fetches == 2
        statuses = [r.status for r in server.requests if r.path != "/oauth/tokens"]
        assert statuses == [200, 401, 200]


def test_a_refused_grant_says_what_to_check(sim: SimulatedZendesk) -> None:
    auth, session = oauth(sim, FakeClock(0.0), secret="WRONG-SECRET")
    with pytest.raises(AuthError) as caught:
        get(sim, session, auth)
    message = str(caught.value)
    assert message.startswith(f"POST {sim.url}/oauth/tokens: 401: ")
    assert message.endswith("…") and "Zendesk said: invalid_client: " in message
    assert "refused the OAuth client credentials grant" in message
    assert "sim-client" in message and "client_credentials grant" in message
    assert "WRONG-SECRET" not in message and "\n" not in message


def test_a_scope_the_client_may_not_have_is_refused(sim: SimulatedZendesk) -> None:
    auth, session = oauth(sim, FakeClock(0.0), scope="tickets:write")
    with pytest.raises(AuthError, match="invalid_scope"):
        get(sim, session, auth)


@pytest.mark.paced  # about 429s / Retry-After: the headers say Zendesk's 700
def test_a_token_endpoint_outage_is_retriable(sim: SimulatedZendesk) -> None:
    sim.inject(Fault("status", status=503, retry_after=2, path="/oauth/tokens"))
    auth, session = oauth(sim, FakeClock(0.0))
    with pytest.raises(RateLimitedError) as caught:
        get(sim, session, auth)
    assert caught.value.retry_after == 2.0
    assert get(sim, session, auth) == 200


def test_threads_share_one_token(sim: SimulatedZendesk) -> None:
    auth, _ = oauth(sim, FakeClock(0.0))
    statuses: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        own = requests.Session()
        for _ in range(3):
            status = get(sim, own, auth)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 24
    assert auth.fetches == 1
    assert token_requests(sim) == 1


def test_the_token_request_sends_json_and_no_authorization(sim: SimulatedZendesk) -> None:
    auth, session = oauth(sim, FakeClock(0.0))
    sent: list[requests.PreparedRequest] = []
    session.hooks["response"].append(lambda r, **_: sent.append(r.request))
    session.auth = auth  # even so, the token request must not carry (or recurse into) it
    assert get(sim, session, auth) == 200
    token_request = next(r for r in sent if r.url and r.url.endswith("/oauth/tokens"))
    assert "Authorization" not in token_request.headers
    assert token_request.headers["Content-Type"] == "application/json"
    assert token_request.body is not None and b'"grant_type": "client_credentials"' in (
        token_request.body if isinstance(token_request.body, bytes) else token_request.body.encode()
    )


def test_an_oversized_token_answer_is_refused_not_read_whole() -> None:
    # A "token" of 4 MiB: valid JSON, so only the size limit can refuse it.
    answer = b'{"access_token": "' + b"t" * (4 << 20) + b'", "expires_in": 3600}'
    with LoopbackServer(
        lambda ex: ex.send(200, {"Content-Type": "application/json"}, answer)
    ) as server:
        auth, session = oauth_client(server.url)
        with pytest.raises(CorruptResponseError, match=r"larger than 64 KiB$") as caught:
            session.get(server.url + "/api/v2/audit_logs", auth=auth, timeout=30)
        assert "sim-client-secret" not in str(caught.value)
        assert auth.fetches == 0


def test_a_401s_body_is_not_read_before_the_token_is_renewed() -> None:
    gets: list[int] = []

    def respond(ex: Exchange) -> None:
        if ex.path == "/oauth/tokens":
            ex.send_json({"access_token": f"token-{len(gets)}", "expires_in": 3600})
            return
        gets.append(1)
        if len(gets) > 1:
            ex.send_json({"audit_logs": [], "meta": {"has_more": False}})
            return
        # A 401 whose body never ends: reading it whole would wait for the read timeout.
        ex.handler.send_response(401)
        ex.handler.send_header("Content-Length", str(1 << 30))
        ex.handler.end_headers()
        ex.wfile.write(b"x" * 65536)
        ex.wfile.flush()
        ex.closing.wait(120)

    with LoopbackServer(respond) as server:
        auth, session = oauth_client(server.url)
        response = session.get(server.url + "/api/v2/audit_logs", auth=auth, timeout=60)
        assert response.status_code == 200
        assert auth.fetches == 2
        sent = [s.headers.get("Authorization") for s in server.seen if s.path != "/oauth/tokens"]
        assert sent == ["Bearer token-0", "Bearer token-1"]


def test_a_token_answer_404_names_the_subdomain_not_the_credentials() -> None:
    """A subdomain's typo: no such account there. It used to be reported as the client
    credentials refused (exit 3), sending the user to check the secret."""
    with LoopbackServer(
        lambda ex: ex.send_json({"error": "InvalidEndpoint", "description": "Not found"}, 404)
    ) as server:
        auth, session = oauth_client(server.url)
        with pytest.raises(RequestRejectedError) as caught:
            session.get(server.url + "/api/v2/audit_logs", auth=auth, timeout=30)
    message = str(caught.value)
    assert message.endswith("404 while obtaining an OAuth token: no such Zendesk account or "
                            "path: check subdomain/base_url")  # fmt: skip
    assert caught.value.exit_code == ExitCode.CONFIG and "sim-client-secret" not in message


def test_a_host_not_found_says_so() -> None:
    """A name that does not resolve (.invalid never does): the DNS named, not the
    exception's class alone."""
    auth, session = oauth_client("http://acme-typo.invalid")
    with pytest.raises(RetriableError) as caught:
        session.get("http://acme-typo.invalid/api/v2/audit_logs", auth=auth, timeout=30)
    assert str(caught.value) == (
        "POST http://acme-typo.invalid/oauth/tokens: could not obtain an OAuth token: "
        "host name not found (DNS)"
    )
