"""The emulator's inbox page: its HTML (over httpx), and the page in headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path

import anyio
import httpx
import pytest

from agora_chat_async import (
    AgoraChatClient,
    CustomBody,
    Rate,
    RateLimits,
    RetryPolicy,
    StaticToken,
    TextBody,
)
from agora_chat_async.testing import Emulator, EmulatorServer, Faults, MockClock, Network

from ..browser import Browser, chromium

NO_RETRY = RetryPolicy(attempts=0, rate_limit_budget=0)
BROWSER_HINT = (
    "no Chromium on this machine: apt-get install chromium (the inbox page's browser test)"
)


def client_for(server: EmulatorServer) -> AgoraChatClient:
    return AgoraChatClient(server.url, "test-org", "test-app", auth=StaticToken("test-token"))


# -- the HTML, read over httpx ---------------------------------------------------------------------


async def page(emulator: Emulator, path: str = "/") -> str:
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
        answer = await http.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    return answer.text


async def test_the_page_lists_messages_by_recipient_with_their_marks():
    emulator = Emulator(clock=MockClock(start=0.0), features=("broadcasts",), online_users={"bob"})
    async with emulator.client() as client:
        sent = await client.send_user_message(["alice", "bob"], TextBody(msg="hello <b>you</b>"))
        await client.send_room_message("lobby", CustomBody(custom_event="gift"), level="high")
        await client.recall_message(sent.message_ids["alice"], "alice", "chat")
        await client.import_user_message("carol", "dave", TextBody(msg="from the archive"))
        await client.broadcast("users", TextBody(msg="to everyone"))
    html = await page(emulator)
    assert "<!doctype html>" in html
    assert "<script>" in html  # the live refresh, inline
    assert "http://" not in html.replace("http://emulator", "")  # nothing from elsewhere
    # Escaped, never markup: the body came from a request.
    assert "hello &lt;b&gt;you&lt;/b&gt;" in html
    assert "<b>you</b>" not in html
    assert 'data-recipient="alice"' in html
    assert 'data-recipient="lobby"' in html
    assert "customEvent: gift" in html
    assert "level=high" in html
    assert "recalled" in section(html, "alice")
    assert "recalled" not in section(html, "bob")
    assert "offline" in section(html, "alice")
    assert "offline" not in section(html, "bob")
    assert "from the archive" in html
    assert "imported" in html
    assert "to everyone" in html
    assert "features the app lacks: rewrite, roaming" in html


async def test_the_quota_table_counts_the_current_window_and_refusals():
    clock = MockClock(start=0.0)
    emulator = Emulator(clock=clock, rate_limits=RateLimits(users=Rate(100, per=60)))
    huge = Rate(10**6, per=1)
    async with emulator.client(
        rate_limits=RateLimits(users=huge, send_calls=huge), retry=NO_RETRY
    ) as client:
        await client.send_user_message([f"u{i}" for i in range(40)], TextBody(msg="a"))
        clock.advance(30)
        await client.send_user_message([f"v{i}" for i in range(50)], TextBody(msg="b"))
        result = await client.send_user_message([f"w{i}" for i in range(20)], TextBody(msg="c"))
        assert not result.ok  # over the 100 a minute: refused
        html = await page(emulator, "/_emulator/inbox")
        assert _cell(html, "users", "used") == "90"
        assert _cell(html, "users", "limit") == "100"
        assert _cell(html, "users", "refused") == "1"
        clock.advance(31)  # the first 40 left the window
        html = await page(emulator, "/_emulator/inbox")
        assert _cell(html, "users", "used") == "50"
    assert "<svg" in html


async def test_the_recipient_filter_shows_everything_one_recipient_got():
    emulator = Emulator(clock=MockClock(start=0.0))
    async with emulator.client() as client:
        for index in range(3):
            await client.send_user_message("alice", TextBody(msg=f"note {index}"))
        await client.send_user_message([f"u{i}" for i in range(300)], TextBody(msg="noise"))
        await client.send_user_message("a&b#1", TextBody(msg="odd id"))
    assert 'href="/?recipient=a%26b%231"' in await page(emulator)
    html = await page(emulator, "/?recipient=alice")
    assert "Messages to alice (3)" in html
    assert all(f"note {index}" in html for index in range(3))
    assert "noise" not in html.split("Messages to alice", 1)[1]
    assert 'value="alice"' in html


async def test_faults_and_the_network_are_listed_and_never_hit_the_page():
    emulator = Emulator(
        clock=MockClock(start=0.0),
        faults={"*": Faults(refuse_503=1.0), "users": Faults(process_then_500=0.25)},
        network=Network.round_trip(0.1, jitter=0.1),
        plan_quota=500,
    )
    html = await page(emulator)  # refuse_503=1.0 for every endpoint, not for the page
    assert "<code>*</code>: refuse_503=1" in html
    assert "<code>users</code>: process_then_500=0.25" in html
    assert "network: 50 ms forward, 50 ms back" in html
    assert "plan quota: 500 recipients" in html
    await page(emulator, "/_emulator/inbox")
    assert emulator.requests == {}  # the page is not a request the app made


async def test_without_records_the_page_says_so():
    emulator = Emulator(clock=MockClock(start=0.0), record_deliveries=False)
    async with emulator.client() as client:
        await client.send_user_message(["a", "b"], TextBody(msg="x"))
    html = await page(emulator)
    assert _cell(html, "users", "used") == "not recorded"
    assert "<b id=delivered>2</b>" in html


def section(html: str, recipient: str) -> str:
    """The rows about one recipient."""
    rows = re.findall(rf'<tr data-recipient="{recipient}".*?</tr>', html)
    assert rows, f"no row for {recipient}"
    return "".join(rows)


def _cell(html: str, limit: str, column: str) -> str:
    row = re.search(rf"<tr data-limit={limit}>(.*?)</tr>", html)
    assert row is not None, f"no row for {limit}"
    cell = re.search(rf"<td class={column}[^>]*>(.*?)</td>", row.group(1))
    assert cell is not None, f"no {column} cell for {limit}"
    return cell.group(1)


# -- the page in a browser ------------------------------------------------------------------------


@pytest.fixture
def browser() -> str:
    found = chromium()
    if found is None:
        if os.environ.get("AGORA_CHAT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"AGORA_CHAT_REQUIRE_BROWSER=1 but {BROWSER_HINT}")
        pytest.skip(BROWSER_HINT)
    return found


def test_the_inbox_page_in_chromium_shows_what_was_sent_and_updates_live(browser, tmp_path):
    emulator = Emulator()

    async def first(server: EmulatorServer) -> None:
        async with client_for(server) as client:
            recipients = [f"user-{index:04d}" for index in range(1200)]
            async with client.fan_out(recipients, TextBody(msg="The fan-out's text")) as results:
                async for _ in results:
                    pass
            sent = await client.send_user_message("alice", TextBody(msg="Hi Alice"))
            await client.recall_message(sent.message_ids["alice"], "alice", "chat")
            await client.send_group_message("team", TextBody(msg="Stand-up at ten"))

    async def later(server: EmulatorServer) -> None:
        async with client_for(server) as client:
            await client.send_user_message("bob", TextBody(msg="Late news for Bob"))

    with EmulatorServer(emulator) as server, Browser(browser) as page:
        anyio.run(first, server)
        page.open(server.url + "/")
        text = page.evaluate("document.body.innerText")
        assert "Hi Alice" in text
        assert "Stand-up at ten" in text
        assert "The fan-out's text" in text
        assert page.evaluate(
            "document.querySelector('tr[data-recipient=\"alice\"] .recalled') !== null"
        )
        assert used(page, "users") == 1201
        assert used(page, "groups") in (0, 1)  # a 1 s window: it may have passed
        assert page.evaluate("document.querySelector('#quotas svg polyline') !== null")
        # Live: the same document (no reload) shows what is sent after it was opened.
        page.evaluate("window.openedOnce = true")
        refreshes = int(page.evaluate("document.body.dataset.refreshes"))
        anyio.run(later, server)
        page.wait_for("document.body.innerText.includes('Late news for Bob')", timeout=10)
        assert page.evaluate("window.openedOnce === true")
        assert int(page.evaluate("document.body.dataset.refreshes")) > refreshes
        assert used(page, "users") == 1202
        assert page.evaluate("document.getElementById('delivered').textContent") == "1203"
        # The browser asked for nothing the app's requests would be confused with.
        assert sum(emulator.refused.values()) == 0
        shot = page.screenshot(artifacts(tmp_path) / "inbox.png")
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 10_000


def used(page: Browser, limit: str) -> int:
    value = page.evaluate(f"document.querySelector('[data-limit={limit}] .used').textContent")
    return int(value)


def artifacts(tmp_path: Path) -> Path:
    """Where test artifacts go: ``$AGORA_CHAT_ARTIFACTS`` (CI keeps it), else a temp dir."""
    where = os.environ.get("AGORA_CHAT_ARTIFACTS")
    path = Path(where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
