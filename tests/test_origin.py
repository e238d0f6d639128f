"""Credentials go to base_url's origin only, as the HTTP library will really connect.

Each trick is a ``links.next`` served by a hand-made server; a SECOND loopback server
stands where the trick points and records every request: it must receive nothing. A
refused link stops the chain with an exit-4 error. A link that is truly on base_url
(an ``@`` in the path, say) is not followed either: continuation is the original request
plus a cursor, and a link of ours that would change the request is a corrupt answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from loopback import Exchange, LoopbackServer
from support import FakeTime

from etl.common.errors import ExitCode, UpstreamError
from etl.common.secret import Secret
from etl.common.settings import Credentials, ZendeskSettings
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import iter_pages

FIRST = "/api/v2/audit_logs?page%5Bsize%5D=1"
API_TOKEN = "tok-NEVER-ELSEWHERE"


@dataclass(frozen=True)
class Trick:
    id: str
    link: str  # links.next, with {p} our port and {o} the other server's
    ours: bool  # truly on base_url (refused as changing the request); else refused as unsafe


A = "/api/v2/audit_logs"
FULLWIDTH_LOCALHOST = "".join(chr(0xFEE0 + ord(c)) for c in "localhost")  # IDNA: localhost
TRICKS = [
    Trick("backslash", "http://127.0.0.1:{o}\\@127.0.0.1:{p}" + A, False),
    Trick("user-info-ours-last", "http://127.0.0.1:{o}@127.0.0.1:{p}" + A, False),
    Trick("user-info-theirs-last", "http://127.0.0.1:{p}@127.0.0.1:{o}" + A, False),
    Trick("user-and-password", "http://u:pw@127.0.0.1:{p}" + A, False),
    Trick("at-in-path", "http://127.0.0.1:{p}" + A + "@127.0.0.1:{o}/", True),
    Trick("at-after-query", "http://127.0.0.1:{p}" + A + "?@127.0.0.1:{o}/", True),
    Trick("at-after-fragment", "http://127.0.0.1:{p}" + A + "#@127.0.0.1:{o}/", True),
    Trick("idna-fullwidth", "http://" + FULLWIDTH_LOCALHOST + ":{o}" + A, False),
    Trick("idna-dots", "http://127\u30020\u30020\u30021:{o}" + A, False),
    Trick("default-port-spelled", "http://127.0.0.1:80" + A + "?{o}", False),
    Trick("no-port", "http://127.0.0.1" + A + "?{o}", False),
    Trick("dot-dot", "http://127.0.0.1:{p}/api/../.." + A + "?{o}", False),
    Trick("encoded-dot-dot", "http://127.0.0.1:{p}/api/%2e%2e/v2/audit_logs?{o}", False),
    Trick("tab-in-host", "http://127.0.0.1:{o}\t@127.0.0.1:{p}" + A, False),
    Trick("other-port", "http://127.0.0.1:{o}" + A, False),
    Trick("https-same-port", "https://127.0.0.1:{p}" + A + "?{o}", False),
    Trick("localhost-spelling", "http://localhost:{o}" + A, False),
]  # fmt: skip


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


def chain_server(link: str) -> LoopbackServer:
    """Page 1 says has_more with ``link`` as the only way on; anything else is the end."""

    def respond(exchange: Exchange) -> None:
        if exchange.path == FIRST:
            exchange.send_json({"audit_logs": [{"id": 1}], "meta": {"has_more": True},
                                "links": {"next": link}})  # fmt: skip
        else:
            exchange.send_json({"audit_logs": [{"id": 2}], "meta": {"has_more": False}})

    return LoopbackServer(respond)


def api_token_client(base_url: str) -> ZendeskClient:
    settings = ZendeskSettings(
        base_url=base_url,
        credentials=Credentials(email="ops@example.com", api_token=Secret(API_TOKEN)),
        retry_budget=5.0,
    )
    fake = FakeTime()  # retries of a refused page cost no real time
    return ZendeskClient(settings, sleep=fake.sleep, clock=fake.clock)


@pytest.mark.parametrize("trick", TRICKS, ids=[t.id for t in TRICKS])
def test_a_tricky_next_link_never_reaches_another_server(
    trick: Trick, other: LoopbackServer
) -> None:
    server = chain_server("")
    with server:
        link = trick.link.format(p=server.port, o=other.port)
        server.respond = chain_server(link).respond
        with api_token_client(server.url) as client:
            with pytest.raises(UpstreamError) as caught:
                list(iter_pages(client, [("page[size]", "1")]))
            assert caught.value.exit_code == ExitCode.UPSTREAM
            message = str(caught.value)
            assert "\n" not in message and API_TOKEN not in message
            if trick.ours:
                assert "links.next" in message  # a path or a query not ours
    assert other.seen == []
    # the first page only, perhaps retried: never the link
    assert {s.path for s in server.seen} == {FIRST}


def test_a_clean_foreign_link_with_a_cursor_goes_on_with_the_cursor(
    other: LoopbackServer,
) -> None:
    def respond(exchange: Exchange) -> None:
        if "page%5Bafter%5D" not in exchange.path:
            links = {"next": f"{other.url}/api/v2/audit_logs?x=1"}
            exchange.send_json({"audit_logs": [{"id": 1}],
                                "meta": {"has_more": True, "after_cursor": "c1"},
                                "links": links})  # fmt: skip
        else:
            exchange.send_json({"audit_logs": [{"id": 2}], "meta": {"has_more": False}})

    with LoopbackServer(respond) as server, api_token_client(server.url) as client:
        pages = list(iter_pages(client, [("page[size]", "2")]))  # the last page short: the end
    assert [p.records for p in pages] == [[{"id": 1}], [{"id": 2}]]
    assert other.seen == []
    assert server.seen[1].path.endswith("page%5Bafter%5D=c1")


def test_a_tricky_link_with_a_cursor_is_still_refused(other: LoopbackServer) -> None:
    """A link shaped to mislead is not a proxy's honest rewrite: the chain stops."""

    def respond(exchange: Exchange) -> None:
        link = f"http://127.0.0.1:{other.port}\\@127.0.0.1:{server.port}/api/v2/audit_logs"
        exchange.send_json({"audit_logs": [{"id": 1}],
                            "meta": {"has_more": True, "after_cursor": "c1"},
                            "links": {"next": link}})  # fmt: skip

    server = LoopbackServer(respond)
    with (
        server,
        api_token_client(server.url) as client,
        pytest.raises(UpstreamError, match="refusing") as caught,
    ):
        list(iter_pages(client, [("page[size]", "1")]))
    assert caught.value.exit_code == ExitCode.UPSTREAM
    assert other.seen == []
    assert len(server.seen) == 1


def test_get_json_refuses_what_urllib3_would_send_elsewhere(other: LoopbackServer) -> None:
    with LoopbackServer() as server, api_token_client(server.url) as client:
        for url in (
            f"http://127.0.0.1:{other.port}\\@127.0.0.1:{server.port}/api/v2/audit_logs",
            f"http://127.0.0.1:{server.port}@127.0.0.1:{other.port}/api",
            f"http://127.0.0.1:{other.port}/api",
        ):
            with pytest.raises(UpstreamError, match="refusing"):
                client.get_json(url)
    assert other.seen == [] and server.seen == []
