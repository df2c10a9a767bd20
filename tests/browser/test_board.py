"""The order board and partner-client.js in a real browser (Debian's Chromium), against real workers.

Orders go in through Kafka exactly as the OrderService writes them; the board is driven the way a
person would (paste a token, tap Accept); what it shows is checked with Playwright's waiting
assertions, never with sleeps.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, BrowserContext, Locator, Page, Route, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from partner_stream.dev.broker import EmbeddedBroker, free_port
from partner_stream.dev.central_hub_standin import ENV_FLAG, install_central_hub_standin, standin_enabled
from partner_stream.settings import Settings
from tests.browser.conftest import DEV_HUB_ENV, TABLET_VIEWPORT, OpenBoard
from tests.conftest import new_worker, restaurant_id
from tests.support.polling import eventually
from tests.support.tablets import PlainTablet, expired_token, tablet_token
from tests.support.workers import Worker

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "web" / "static"
DOCS_SCREENSHOT = REPO / "docs" / "board.png"
RESTART_TIMEOUT_MS = 120_000
TIMES = "\u00d7"  # MULTIPLICATION SIGN, as the board writes quantities

Item = tuple[str, int, float, str | None]


def order_body(restaurant: str, order_id: str, customer: str, items: list[Item], **extra: Any) -> dict[str, Any]:
    lines = [
        {"Name": name, "Quantity": quantity, "UnitPrice": price, **({"Notes": notes} if notes else {})}
        for name, quantity, price, notes in items
    ]
    total = round(sum(quantity * price for _, quantity, price, _ in items), 2)
    return {
        "OrderId": order_id,
        "RestaurantId": restaurant,
        "CustomerName": customer,
        "Items": lines,
        "TotalPrice": total,
        **extra,
    }


async def publish(producer: AIOKafkaProducer, topic: str, body: dict[str, Any]) -> None:
    await producer.send_and_wait(topic, orjson.dumps(body), key=str(body["OrderId"]).encode())


async def create_order(
    producer: AIOKafkaProducer, worker: Worker, restaurant: str, customer: str = "Ana", items: list[Item] | None = None
) -> str:
    order_id = str(uuid.uuid4())
    items = items or [("Pad Thai", 2, 9.5, None)]
    await publish(producer, worker.topics.created, order_body(restaurant, order_id, customer, items))
    return order_id


def card(page: Page, order_id: str) -> Locator:
    return page.locator(f'#cards > li[data-order-id="{order_id}"]')


async def wait_for_cards(page: Page, expected: list[str], *, timeout: float = 30_000) -> None:
    """Wait until the board shows exactly ``expected`` (any order), each once."""
    await page.wait_for_function(
        """expected => {
            const ids = [...document.querySelectorAll('#cards > li')].map((li) => li.dataset.orderId).sort();
            return JSON.stringify(ids) === JSON.stringify(expected);
        }""",
        arg=sorted(expected),
        timeout=timeout,
    )


async def wait_for_board(page: Page, worker: Worker, restaurant: str, expected: list[str], timeout: float) -> None:
    """:func:`wait_for_cards`; on timeout, say what the board and the worker hold (board bug or stream bug?)."""
    try:
        await wait_for_cards(page, expected, timeout=timeout)
    except PlaywrightTimeoutError:
        try:
            server = await pending_orders(worker, restaurant)
        except Exception as exc:
            server = repr(exc)
        status = await page.locator("#connection").text_content()
        raise AssertionError(
            f"board shows {await card_ids(page)} ({status}), expected {expected}; worker holds {server}\n"
            f"worker log tail:\n{worker.log_tail(40)}"
        ) from None


async def card_ids(page: Page) -> list[str]:
    return await page.locator("#cards > li").evaluate_all("items => items.map((li) => li.dataset.orderId)")


async def pending_orders(worker: Worker, restaurant: str) -> dict[str, Any]:
    status, body = await worker.get_json(f"/api/restaurants/{restaurant}/pending-orders")
    assert status == 200, body
    return body


# -- the board against a dev worker ----------------------------------------------------------


async def test_new_order_appears_with_items_total_and_a_cue(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard
) -> None:
    restaurant = restaurant_id()
    page = await open_board(board_worker, restaurant)
    await expect(page.locator("#empty")).to_be_visible()
    await expect(page.locator("#restaurant-label")).to_contain_text(restaurant)
    await expect(page.locator("#connection")).to_contain_text("Live")
    sound = page.get_by_role("button", name="New-order sound")
    await expect(sound).to_have_attribute("aria-pressed", "false")
    await sound.click()
    await expect(sound).to_have_attribute("aria-pressed", "true")

    order_id = await create_order(
        producer,
        board_worker,
        restaurant,
        "Ana",
        [("Pad Thai", 2, 9.5, "no peanuts"), ("Spring Rolls", 1, 4.5, None)],
    )

    shown = card(page, order_id)
    await expect(shown).to_be_visible()
    await expect(shown.locator(".customer")).to_have_text("Ana")
    rows = shown.locator(".items > li")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0).locator(".qty")).to_have_text(f"2{TIMES}")
    await expect(rows.nth(0).locator(".item-name")).to_have_text("Pad Thai")
    await expect(rows.nth(0).locator(".line-price")).to_have_text("19.00")
    await expect(rows.nth(0).locator(".notes")).to_have_text("no peanuts")
    await expect(rows.nth(1)).to_contain_text(f"1{TIMES}Spring Rolls4.50")
    await expect(shown.locator(".total-value")).to_have_text("23.50")
    await expect(page.locator("#order-count")).to_have_text("1 pending")
    await expect(page.locator("#empty")).to_be_hidden()

    # The new-order cue: highlighted card, and a screen-reader announcement.
    await expect(shown).to_have_class(re.compile(r"\bis-new\b"))
    await expect(page.locator("#announcer")).to_have_text(
        f"New order from Ana: 2 {TIMES} Pad Thai, 1 {TIMES} Spring Rolls. Total 23.50."
    )
    await expect(page.locator("#announcer")).to_have_attribute("aria-live", "assertive")
    await expect(page.get_by_role("button", name="Accept order from Ana")).to_be_enabled()
    await expect(page.get_by_role("button", name="Reject order from Ana")).to_be_enabled()

    # The age ticks every second.
    age = shown.locator(".age")
    await expect(age).to_have_text(re.compile(r"^\d+ s$"))
    first = await age.text_content()
    await expect(age).not_to_have_text(first or "")

    # The board acknowledged the order it displayed: the stream recorded it.
    await eventually(
        lambda: pending_orders(board_worker, restaurant),
        lambda snapshot: bool(snapshot["orders"] and snapshot["orders"][0]["acknowledgedAt"]),
        what="the displayed order to be acknowledged",
    )


async def test_card_leaves_on_the_stream_event_not_on_the_click(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard
) -> None:
    restaurant = restaurant_id()
    page = await open_board(board_worker, restaurant)
    held = await create_order(producer, board_worker, restaurant, "Chiara")
    await expect(card(page, held)).to_be_visible()

    # CentralHub says yes but publishes nothing: the card stays, the button says what happened.
    async def accept_without_publishing(route: Route) -> None:
        await route.fulfill(status=202, json={"orderId": held, "status": "accepted"})

    await page.route("**/api/orders/**", accept_without_publishing)
    await card(page, held).get_by_role("button", name="Accept order from Chiara").click()
    await expect(card(page, held).locator(".card-note")).to_contain_text("Waiting for the order system")
    await expect(card(page, held).locator(".accept")).to_have_text("Accepted")
    await expect(card(page, held).locator(".accept")).to_be_disabled()
    await expect(card(page, held)).to_be_visible()

    # The OrderAccepted event arrives through Kafka: now the card leaves.
    await publish(producer, board_worker.topics.accepted, {"OrderId": held, "RestaurantId": restaurant})
    await expect(card(page, held)).to_have_count(0)
    await page.unroute("**/api/orders/**")

    # The whole loop through the dev CentralHub stand-in: tap Accept, the card leaves.
    order_id = await create_order(producer, board_worker, restaurant, "Dmitri")
    await expect(card(page, order_id)).to_be_visible()
    async with page.expect_request(f"**/api/orders/{order_id}/accept") as posted:
        await page.get_by_role("button", name="Accept order from Dmitri").click()
    request = await posted.value
    assert request.method == "POST"
    assert request.post_data_json == {"restaurantId": restaurant}
    scheme, _, bearer = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    assert jwt.decode(bearer, options={"verify_signature": False})["restaurantId"] == restaurant
    await expect(card(page, order_id)).to_have_count(0)
    await expect(page.locator("#empty")).to_be_visible()
    assert (await pending_orders(board_worker, restaurant))["orders"] == []


async def test_reject_with_a_reason_goes_through_the_stream(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard
) -> None:
    restaurant = restaurant_id()
    page = await open_board(board_worker, restaurant)
    tablet = await PlainTablet.connect(board_worker, restaurant)
    try:
        order_id = await create_order(producer, board_worker, restaurant, "Esi")
        shown = card(page, order_id)
        await expect(shown).to_be_visible()
        await page.get_by_role("button", name="Reject order from Esi").click()
        await page.get_by_label("Reason for rejecting the order from Esi").select_option("An item is unavailable")
        await page.get_by_role("button", name="Confirm rejecting the order from Esi").click()
        await expect(shown).to_have_count(0)
        rejected = await tablet.wait_for("OrderRejected")
        assert rejected["data"]["orderId"] == order_id
        assert rejected["data"]["reason"] == "An item is unavailable"
    finally:
        await tablet.close()


async def test_failed_central_hub_calls_leave_the_card_with_an_error(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard
) -> None:
    # Nothing listens on CentralHub's port.
    restaurant = restaurant_id()
    closed = f"http://127.0.0.1:{free_port()}"
    page = await open_board(board_worker, restaurant, hub_url=closed)
    order_id = await create_order(producer, board_worker, restaurant, "Farid")
    shown = card(page, order_id)
    await shown.get_by_role("button", name="Accept order from Farid").click()
    error = shown.locator(".card-error")
    await expect(error).to_be_visible()
    await expect(error).to_have_text(f"Could not accept this order. CentralHub at {closed}: cannot reach it.")
    await expect(error).to_have_attribute("role", "alert")
    await expect(shown).to_have_class(re.compile(r"\bfailed\b"))
    await expect(shown.locator(".accept")).to_be_enabled()
    await expect(shown.locator(".accept")).to_have_text("Accept")

    # CentralHub refuses (403): the real stand-in, asked for another restaurant than the token's.
    restaurant = restaurant_id()
    page = await open_board(board_worker, restaurant)
    order_id = await create_order(producer, board_worker, restaurant, "Grace")
    shown = card(page, order_id)

    async def for_another_restaurant(route: Route) -> None:
        await route.continue_(post_data=orjson.dumps({"restaurantId": "someone-else"}))

    await page.route("**/api/orders/**", for_another_restaurant)
    await shown.get_by_role("button", name="Accept order from Grace").click()
    await expect(shown.locator(".card-error")).to_have_text(
        f"Could not accept this order. CentralHub answered 403: token is for restaurant '{restaurant}', "
        "not 'someone-else'."
    )
    await expect(shown.locator(".accept")).to_be_enabled()
    await expect(shown).to_be_visible()

    # A retry that succeeds clears the error, and the stream removes the card.
    await page.unroute("**/api/orders/**")
    await shown.get_by_role("button", name="Accept order from Grace").click()
    await expect(shown).to_have_count(0)


async def test_two_boards_see_only_their_own_restaurant(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard
) -> None:
    first, second = restaurant_id(), restaurant_id()
    first_page = await open_board(board_worker, first)
    second_page = await open_board(board_worker, second)
    mine = [await create_order(producer, board_worker, first, "Hiro")]
    theirs = [await create_order(producer, board_worker, second, "Ines")]
    mine.append(await create_order(producer, board_worker, first, "Ben"))
    await wait_for_cards(first_page, mine)
    await wait_for_cards(second_page, theirs)
    await expect(second_page.locator("#restaurant-label")).to_contain_text(second)
    await expect(second_page.locator("#order-count")).to_have_text("1 pending")
    assert sorted(await card_ids(first_page)) == sorted(mine)


async def test_sign_in_is_kept_for_the_tab_and_refused_tokens_are_explained(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard
) -> None:
    restaurant = restaurant_id()
    page = await open_board(board_worker, restaurant)
    order_id = await create_order(producer, board_worker, restaurant, "Ana")
    await expect(card(page, order_id)).to_be_visible()

    # A reload keeps the session (sessionStorage) and shows the same order once, without a new-order cue.
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await wait_for_cards(page, [order_id])
    await expect(card(page, order_id)).not_to_have_class(re.compile(r"\bis-new\b"))

    # Signing out forgets the token and shows the sign-in form again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Tablet token")).to_be_visible()
    await expect(page.locator("#connection")).to_have_text("Signed out")
    assert await page.evaluate("sessionStorage.getItem('partner-board.token')") is None

    # What the page can tell by itself, it says before connecting.
    await page.get_by_label("Tablet token").fill("not a token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_contain_text("not a tablet token")
    await page.get_by_label("Tablet token").fill(expired_token(restaurant))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in-error")).to_contain_text("The token expired")

    # What only the server can tell (a bad signature: 401) stops the board, with the reason.
    await page.get_by_label("Tablet token").fill(tablet_token(restaurant, secret="not-the-worker-secret" * 2))
    await page.get_by_role("button", name="Sign in").click()
    status = page.locator("#connection")
    await expect(status).to_have_attribute("data-state", "offline")
    await expect(status).to_contain_text("Offline: token signature is invalid")
    await expect(page.get_by_role("button", name="Reconnect")).to_be_visible()


async def test_board_reconnects_after_the_worker_dies_and_shows_every_order_once(
    broker: EmbeddedBroker,
    producer: AIOKafkaProducer,
    open_board: OpenBoard,
    tmp_path: Path,
    artifacts_dir: Path,
) -> None:
    worker = new_worker(broker, tmp_path, artifacts_dir, "board-restart", extra_env=DEV_HUB_ENV)
    await worker.start()
    try:
        restaurant = restaurant_id()
        page = await open_board(worker, restaurant)
        status = page.locator("#connection")
        kept = await create_order(producer, worker, restaurant, "Ana")
        resolved_away = await create_order(producer, worker, restaurant, "Ben")
        await wait_for_cards(page, [kept, resolved_away])

        # Crash: the board says so, keeps the last known orders, and keeps trying.
        await worker.kill()
        await expect(status).to_have_attribute("data-state", "reconnecting")
        await expect(status).to_contain_text(re.compile(r"Reconnecting… \(attempt \d+\) · last sync \d\d:\d\d:\d\d"))
        await expect(page.locator("#stale-banner")).to_be_visible()
        # While it is down the OrderService goes on: one order resolved, two new ones.
        await publish(producer, worker.topics.accepted, {"OrderId": resolved_away, "RestaurantId": restaurant})
        away = [await create_order(producer, worker, restaurant, name) for name in ("Chiara", "Dmitri")]

        await worker.start()
        await expect(status).to_have_attribute("data-state", "live", timeout=RESTART_TIMEOUT_MS)
        await wait_for_board(page, worker, restaurant, [kept, *away], timeout=RESTART_TIMEOUT_MS)
        await expect(page.locator("#stale-banner")).to_be_hidden()
        ids = await card_ids(page)
        assert len(ids) == len(set(ids)) == 3

        # A graceful stop (the server says "shutting down, come back") and one more order while away.
        await worker.stop()
        await expect(status).to_have_attribute("data-state", "reconnecting")
        later = await create_order(producer, worker, restaurant, "Esi")
        await worker.start()
        await expect(status).to_have_attribute("data-state", "live", timeout=RESTART_TIMEOUT_MS)
        await wait_for_board(page, worker, restaurant, [kept, *away, later], timeout=RESTART_TIMEOUT_MS)
        ids = await card_ids(page)
        assert len(ids) == len(set(ids)) == 4
        # New orders that arrived while away are cued like live ones; the one seen before is not.
        await expect(card(page, later)).to_have_class(re.compile(r"\bis-new\b"))
    finally:
        await worker.stop()


async def test_screenshot_of_a_board_with_orders(
    board_worker: Worker, producer: AIOKafkaProducer, open_board: OpenBoard, artifacts_dir: Path
) -> None:
    restaurant = restaurant_id()
    now = datetime.now(UTC)
    earlier = [
        ("Grace", [("Green Curry", 1, 11.0, None), ("Jasmine Rice", 2, 2.0, None)], 14),
        ("Hiro", [("Tom Yum Soup", 2, 7.25, "extra spicy"), ("Thai Iced Tea", 2, 3.5, None)], 6),
        ("Ines", [("Spring Rolls", 3, 4.5, None)], 2),
    ]
    for customer, items, minutes_ago in earlier:
        created_at = (now - timedelta(minutes=minutes_ago)).isoformat()
        body = order_body(restaurant, str(uuid.uuid4()), customer, items, CreatedAt=created_at)
        await publish(producer, board_worker.topics.created, body)
    await eventually(
        lambda: pending_orders(board_worker, restaurant), lambda s: len(s["orders"]) == 3, what="three orders"
    )
    page = await open_board(board_worker, restaurant)
    await expect(page.locator("#cards > li")).to_have_count(3)
    fresh = await create_order(
        producer,
        board_worker,
        restaurant,
        "Ana",
        [("Pad Thai", 2, 9.5, "no peanuts"), ("Mango Sticky Rice", 1, 5.0, None)],
    )
    await expect(card(page, fresh)).to_have_class(re.compile(r"\bis-new\b"))
    shot = artifacts_dir / "board.png"
    await page.screenshot(path=str(shot), animations="disabled")
    assert shot.stat().st_size > 10_000
    if not DOCS_SCREENSHOT.exists() or os.environ.get("PARTNER_STREAM_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)


# -- orders no tablet showed in time ---------------------------------------------------------------

#: The page's visibility under the test's control: a hidden board renders orders but does not acknowledge them.
HIDDEN_PAGE = """
(() => {
  let hidden = true;
  const visibility = () => (hidden ? "hidden" : "visible");
  Object.defineProperty(Document.prototype, "visibilityState", { configurable: true, get: visibility });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => hidden });
  window.showPage = () => { hidden = false; document.dispatchEvent(new Event("visibilitychange")); };
})();
"""
MISSED_TEXT = re.compile(r"^Missed for 5 min \d\d s — arrived while no tablet showed it$")
UNSEEN_TEXT = re.compile(r"^Unseen for 5 min \d\d s$")
MARKED = re.compile(r"\bis-missed\b")
STILL_UNSEEN = re.compile(r"\bis-unseen\b")


async def create_order_made_ago(
    producer: AIOKafkaProducer, worker: Worker, restaurant: str, customer: str, ago: timedelta
) -> str:
    """An order whose upstream ``CreatedAt`` lies ``ago`` in the past (as after a tablet outage)."""
    order_id = str(uuid.uuid4())
    created_at = (datetime.now(UTC) - ago).isoformat()
    body = order_body(restaurant, order_id, customer, [("Pad Thai", 1, 9.5, None)], CreatedAt=created_at)
    await publish(producer, worker.topics.created, body)
    return order_id


async def acknowledge_elsewhere(worker: Worker, restaurant: str, order_id: str) -> None:
    """Another tablet of the restaurant shows (acknowledges) the order; wait for the stream to record it."""
    tablet = await PlainTablet.connect(worker, restaurant)
    try:
        await tablet.send({"type": "ack", "orderId": order_id, "id": "seen-1"})
        await tablet.wait_for(lambda m: m.get("type") == "OrderAcknowledged" and m["data"]["orderId"] == order_id)
    finally:
        await tablet.close()


async def open_board_page(
    browser: Browser,
    contexts: list[BrowserContext],
    page_errors: list[str],
    worker: Worker,
    restaurant: str,
    *,
    hidden: bool = False,
    unseen_after: str | None = None,
) -> Page:
    """Like ``open_board``, optionally with the page hidden (see HIDDEN_PAGE) or another served threshold."""
    context = await browser.new_context(viewport=TABLET_VIEWPORT, locale="en-US", timezone_id="UTC")
    contexts.append(context)
    if hidden:
        await context.add_init_script(HIDDEN_PAGE)
    if unseen_after is not None:
        # Rewrite the attribute once the page is parsed, before its module script runs (a routed page
        # would do too, but Chromium then refuses the page's WebSocket).
        value = orjson.dumps(unseen_after).decode()
        await context.add_init_script(
            "document.addEventListener('readystatechange', () => {"
            f" if (document.readyState === 'interactive') document.body.dataset.unseenAfterSeconds = {value}; }});"
        )
    page = await context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    await page.goto(f"{worker.base_url}/board/")
    await page.get_by_label("Tablet token").fill(tablet_token(restaurant))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def expect_unmarked(shown: Locator) -> None:
    await expect(shown).to_be_visible()
    await expect(shown).not_to_have_class(MARKED)
    await expect(shown.locator(".badge-missed")).to_be_hidden()
    await expect(shown.get_by_role("article")).to_have_accessible_description("")


async def test_orders_no_tablet_showed_in_time_are_marked(
    board_worker: Worker,
    producer: AIOKafkaProducer,
    browser: Browser,
    contexts: list[BrowserContext],
    page_errors: list[str],
) -> None:
    restaurant = restaurant_id()
    five_minutes = timedelta(minutes=5)
    seen_late = await create_order_made_ago(producer, board_worker, restaurant, "Grace", five_minutes)
    never_seen = await create_order_made_ago(producer, board_worker, restaurant, "Hiro", five_minutes)
    fresh = await create_order(producer, board_worker, restaurant, "Ines")
    await eventually(
        lambda: pending_orders(board_worker, restaurant), lambda s: len(s["orders"]) == 3, what="three orders"
    )
    # Another tablet came back online and showed Grace's order now, 5 min after it was placed (> 60 s).
    await acknowledge_elsewhere(board_worker, restaurant, seen_late)

    # A board whose screen is off: it lists the orders but shows (acknowledges) none of them.
    page = await open_board_page(browser, contexts, page_errors, board_worker, restaurant, hidden=True)
    await wait_for_cards(page, sorted([seen_late, never_seen, fresh]))

    late = card(page, seen_late)
    await expect(late).to_have_class(MARKED)
    await expect(late).not_to_have_class(STILL_UNSEEN)
    await expect(late.locator(".badge-missed")).to_be_visible()
    await expect(late.locator(".badge-missed")).to_have_text(MISSED_TEXT)
    body = late.get_by_role("article")
    await expect(body).to_have_accessible_name("Grace")
    await expect(body).to_have_accessible_description(MISSED_TEXT)

    unseen = card(page, never_seen)
    await expect(unseen).to_have_class(MARKED)
    await expect(unseen).to_have_class(STILL_UNSEEN)
    await expect(unseen.locator(".badge-missed")).to_have_text(UNSEEN_TEXT)
    await expect(unseen.get_by_role("article")).to_have_accessible_description(UNSEEN_TEXT)
    # Still unacknowledged, the duration keeps counting.
    counting = await unseen.locator(".badge-missed").text_content()
    await expect(unseen.locator(".badge-missed")).not_to_have_text(counting or "")

    await expect_unmarked(card(page, fresh))

    # The screen comes on: the board shows Hiro's order, the stream records it, the mark says it was missed.
    await page.evaluate("showPage()")
    await expect(unseen).not_to_have_class(STILL_UNSEEN)
    await expect(unseen).to_have_class(MARKED)
    await expect(unseen.locator(".badge-missed")).to_have_text(MISSED_TEXT)
    await eventually(
        lambda: pending_orders(board_worker, restaurant),
        lambda s: all(order["acknowledgedAt"] for order in s["orders"]),
        what="every displayed order to be acknowledged",
    )
    await expect_unmarked(card(page, fresh))
    # A missed order's duration is fixed once a tablet showed it.
    frozen = await unseen.locator(".badge-missed").text_content()
    age = card(page, fresh).locator(".age")
    await expect(age).not_to_have_text(await age.text_content() or "")  # the board ticked since
    assert await unseen.locator(".badge-missed").text_content() == frozen


@pytest.mark.parametrize(
    ("unseen_after", "marked"),
    [("600", False), ("299.5", True), ("not-a-number", True), ("0", True), ("", True)],
    ids=["600s", "299.5s", "invalid-falls-back-to-60s", "zero-falls-back-to-60s", "empty-falls-back-to-60s"],
)
async def test_the_board_uses_the_threshold_the_page_carries(
    board_worker: Worker,
    producer: AIOKafkaProducer,
    browser: Browser,
    contexts: list[BrowserContext],
    page_errors: list[str],
    unseen_after: str,
    marked: bool,
) -> None:
    restaurant = restaurant_id()
    order_id = await create_order_made_ago(producer, board_worker, restaurant, "Grace", timedelta(minutes=5))
    await eventually(
        lambda: pending_orders(board_worker, restaurant), lambda s: len(s["orders"]) == 1, what="the order"
    )
    page = await open_board_page(browser, contexts, page_errors, board_worker, restaurant, unseen_after=unseen_after)
    shown = card(page, order_id)
    await expect(shown).to_be_visible()
    # The board itself shows the order now: acknowledged 5 min after it was placed.
    await eventually(
        lambda: pending_orders(board_worker, restaurant),
        lambda s: bool(s["orders"][0]["acknowledgedAt"]),
        what="the order to be acknowledged",
    )
    await expect(shown.locator(".age")).to_have_text(re.compile(r"^5 min \d\d s$"))
    if marked:
        await expect(shown).to_have_class(MARKED)
        await expect(shown.locator(".badge-missed")).to_have_text(MISSED_TEXT)
    else:
        await expect_unmarked(shown)


# -- the board and the stand-in over plain HTTP -------------------------------------------------


async def test_the_board_is_served_and_the_stand_in_is_off_without_the_dev_flag(shared_worker: Worker) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{shared_worker.base_url}/board/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
            assert "Order board" in page
            assert '<body data-unseen-after-seconds="60">' in page  # the default PARTNER_STREAM_UNSEEN_AFTER
        async with session.get(f"{shared_worker.base_url}/static/partner-client.js") as response:
            assert response.status == 200
            assert "javascript" in response.content_type
            assert "export function createPartnerClient" in await response.text()
        async with session.get(f"{shared_worker.base_url}/board", allow_redirects=False) as response:
            assert response.status == 308 and response.headers["Location"] == "/board/"
        url = f"{shared_worker.base_url}/api/orders/o-1/accept"
        token = tablet_token("1")
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(url, json={"restaurantId": "1"}, headers=headers) as response:
            assert response.status == 404


@pytest.mark.parametrize(
    ("token", "body", "status", "message"),
    [
        (None, {"restaurantId": "R"}, 401, "missing token"),
        ("garbage", {"restaurantId": "R"}, 401, "malformed token"),
        ("other", {"restaurantId": "R"}, 403, "token is for restaurant"),
        ("own", {}, 400, "'restaurantId' is required"),
        ("own", ["R"], 400, "JSON object"),
    ],
    ids=["no-token", "garbage-token", "other-restaurant", "no-restaurant", "not-an-object"],
)
async def test_stand_in_refuses_bad_requests(
    board_worker: Worker, token: str | None, body: Any, status: int, message: str
) -> None:
    restaurant = restaurant_id()
    body = {k: restaurant if v == "R" else v for k, v in body.items()} if isinstance(body, dict) else [restaurant]
    bearer = {"own": tablet_token(restaurant), "other": tablet_token("someone-else"), "garbage": "garbage"}.get(
        token or ""
    )
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{board_worker.base_url}/api/orders/o-1/reject", json=body, headers=headers) as response,
    ):
        assert response.status == status
        assert message in (await response.json())["error"]


async def test_stand_in_publishes_accept_to_kafka(board_worker: Worker, producer: AIOKafkaProducer) -> None:
    restaurant = restaurant_id()
    order_id = await create_order(producer, board_worker, restaurant)
    await eventually(
        lambda: pending_orders(board_worker, restaurant), lambda s: len(s["orders"]) == 1, what="the order"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{board_worker.base_url}/api/orders/{order_id}/accept",
            json={"restaurantId": restaurant},
            headers={"Authorization": f"Bearer {tablet_token(restaurant)}"},
        ) as response,
    ):
        assert response.status == 202
        assert await response.json() == {"orderId": order_id, "restaurantId": restaurant, "status": "accepted"}
    await eventually(
        lambda: pending_orders(board_worker, restaurant), lambda s: s["orders"] == [], what="the order to leave"
    )


def test_stand_in_is_impossible_to_enable_outside_dev() -> None:
    embedded = Settings(broker_profile="embedded")
    kafka = Settings(broker_profile="kafka")
    assert standin_enabled(embedded, {ENV_FLAG: "1"})
    assert not standin_enabled(kafka, {ENV_FLAG: "1"})
    assert not standin_enabled(embedded, {})
    assert not standin_enabled(embedded, {ENV_FLAG: "true"})
    with pytest.raises(RuntimeError, match="dev-only"):
        install_central_hub_standin(web.Application(), kafka)


# -- partner-client.js alone, against a scripted fake WebSocket ----------------------------------

CLIENT_ORIGIN = "http://client.test"

FAKE_SOCKET = """
window.sockets = [];
window.FakeSocket = class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; window.sockets.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code, reason) { this.readyState = 3; this.closedWith = code; }
  open() { this.readyState = 1; this.onopen?.({}); }
  receive(message) { this.onmessage?.({ data: JSON.stringify(message) }); }
  drop(code, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
};
window.order = (id, seq, extra = {}) => ({
  orderId: id, restaurantId: "r1", customerName: "Ana", items: [], totalPrice: 1,
  createdAt: `2024-01-01T00:00:${String(seq).padStart(2, '0')}Z`, seq, acknowledgedAt: null, ...extra,
});
window.waitFor = async (check, what) => {
  for (let i = 0; i < 400; i++) { if (check()) return; await new Promise((r) => setTimeout(r, 10)); }
  throw new Error(`timed out waiting for ${what}`);
};
"installed";
"""


@pytest.fixture
async def client_page(browser: Browser, contexts: list[BrowserContext]) -> Page:
    """A blank page on a fake origin that can import /static/partner-client.js (no worker needed)."""
    context = await browser.new_context()
    contexts.append(context)
    page = await context.new_page()

    async def serve(route: Route) -> None:
        path = urlparse(route.request.url).path
        if path.startswith("/static/"):
            file = STATIC / path.removeprefix("/static/")
            await route.fulfill(path=str(file), content_type="text/javascript")
        else:
            await route.fulfill(body="<!doctype html><title>client</title>", content_type="text/html")

    await page.route(f"{CLIENT_ORIGIN}/**", serve)
    await page.goto(f"{CLIENT_ORIGIN}/")
    await page.evaluate(FAKE_SOCKET)
    return page


async def test_client_module_has_no_global_side_effects(client_page: Page) -> None:
    added = await client_page.evaluate(
        """async () => {
            const before = new Set(Object.getOwnPropertyNames(window));
            const module = await import('/static/partner-client.js');
            const after = Object.getOwnPropertyNames(window).filter((name) => !before.has(name));
            return { added: after, exports: Object.keys(module).sort() };
        }"""
    )
    assert added["added"] == []
    assert "createPartnerClient" in added["exports"]


async def test_client_reconciles_snapshot_and_seq_without_duplicates(client_page: Page) -> None:
    result = await client_page.evaluate(
        """async () => {
            const { createPartnerClient } = await import('/static/partner-client.js');
            const log = [];
            const client = createPartnerClient({
              url: 'ws://worker.test/ws/partner', restaurantId: 'r1', token: 't0k',
              WebSocket: FakeSocket, fetch: async () => { throw new TypeError('down'); },
              backoffBaseMs: 5, backoffCapMs: 20, pingIntervalMs: 30,
            });
            client.on('order', (o, meta) => log.push(['order', o.orderId, meta.source, meta.initial]));
            client.on('resolved', (e) => log.push(['resolved', e.orderId, e.outcome]));
            client.on('acknowledged', (e) => log.push(['acknowledged', e.orderId]));
            client.on('status', (s) => log.push(['status', s.state]));
            const ids = () => client.orders().map((o) => o.orderId).join(',');
            client.start();
            await waitFor(() => sockets.length === 1, 'a socket');
            const s1 = sockets[0];
            s1.open();
            s1.receive({ type: 'PendingOrders', seq: 5, data: { restaurantId: 'r1', orders: [order('A', 3)] } });
            const afterSnapshot = ids();
            s1.receive({ type: 'NewOrder', seq: 6, data: order('B', 6) });
            s1.receive({ type: 'NewOrder', seq: 6, data: order('B', 6) });          // duplicate
            s1.receive({ type: 'NewOrder', seq: 8, data: order('C', 8) });          // gap: 7 is missing
            const duringGap = ids();
            const resume = s1.sent.find((m) => m.type === 'resume');
            s1.receive({ type: 'OrderAccepted', seq: 9, data: { orderId: 'A', restaurantId: 'r1', seq: 9 } });
            const snapshot = (seq, orders) => ({ type: 'PendingOrders', seq, data: { restaurantId: 'r1', orders } });
            s1.receive(snapshot(9, [order('B', 6), order('C', 8)]));
            const afterResync = ids();
            const seen = { orderId: 'B', restaurantId: 'r1', seq: 10, acknowledgedAt: '2024-01-01T00:01:00Z' };
            s1.receive({ type: 'OrderAcknowledged', seq: 10, data: seen });
            const rejected = { orderId: 'C', restaurantId: 'r1', seq: 11, reason: 'busy' };
            s1.receive({ type: 'OrderRejected', seq: 11, data: rejected });
            const beforeDrop = ids();
            await waitFor(() => s1.sent.some((m) => m.type === 'ping'), 'a ping');
            s1.drop(1006);
            await waitFor(() => sockets.length === 2, 'a reconnect');
            const s2 = sockets[1];
            s2.open();
            s2.receive(snapshot(13, [order('D', 12), order('B', 6, { acknowledgedAt: 'x' })]));
            const afterReconnect = ids();
            const seq = client.seq();
            s2.receive({ type: 'close', code: 4501, reason: 'unauthorized', reconnect: false });
            s2.drop(4501, 'unauthorized');
            const final = client.status();
            await new Promise((r) => setTimeout(r, 100));
            return { afterSnapshot, duringGap, resume, afterResync, beforeDrop, afterReconnect, seq, final,
                     sockets: sockets.length, url: s1.url, log };
        }"""
    )
    assert result["url"] == "ws://worker.test/ws/partner?restaurantId=r1&access_token=t0k"
    assert result["afterSnapshot"] == "A"
    assert result["duringGap"] == "A,B"  # the push after the gap is not applied
    assert result["resume"] == {"type": "resume", "seq": 6}
    assert result["afterResync"] == "B,C"
    assert result["beforeDrop"] == "B"
    assert result["afterReconnect"] == "B,D"
    assert result["seq"] == 13
    assert result["final"]["state"] == "offline"
    assert result["final"]["error"] == {"message": "unauthorized", "code": 4501}
    assert result["sockets"] == 2  # terminal code: no reconnect
    events = [entry for entry in result["log"] if entry[0] != "status"]
    assert events == [
        ["order", "A", "snapshot", True],
        ["order", "B", "push", False],
        ["resolved", "A", "unknown"],  # gone from the resync snapshot: resolved while we were out of sync
        ["order", "C", "snapshot", False],
        ["acknowledged", "B"],
        ["resolved", "C", "rejected"],
        ["order", "D", "snapshot", False],
    ]
    states = [entry[1] for entry in result["log"] if entry[0] == "status"]
    assert states == ["connecting", "live", "reconnecting", "live", "offline"]


async def test_client_learns_why_a_connect_failed(client_page: Page) -> None:
    result = await client_page.evaluate(
        """async () => {
            const { createPartnerClient } = await import('/static/partner-client.js');
            const answers = [
              new Response(JSON.stringify({ error: 'recovering' }), { status: 503, headers: { 'Retry-After': '0' } }),
              new Response(JSON.stringify({ error: 'elsewhere', owner: 'http://owner.test:5004' }), { status: 421 }),
              new Response(JSON.stringify({ error: 'token expired' }), { status: 401 }),
            ];
            const probes = [];
            const client = createPartnerClient({
              url: 'ws://worker.test/ws/partner', restaurantId: 'r1', token: 't0k', WebSocket: FakeSocket,
              fetch: async (url) => { probes.push(url); return answers.shift(); },
              backoffBaseMs: 5, backoffCapMs: 20,
            });
            const states = [];
            client.on('status', (s) => states.push([s.state, s.error && s.error.httpStatus]));
            client.start();
            for (let n = 1; n <= 3; n++) {
              await waitFor(() => sockets.length === n, `socket ${n}`);
              sockets[n - 1].drop(1006);
            }
            await waitFor(() => client.status().state === 'offline', 'offline');
            return { states, probes, urls: sockets.map((s) => s.url), status: client.status() };
        }"""
    )
    assert result["probes"][0] == "http://worker.test/ws/partner?restaurantId=r1&access_token=t0k"
    assert result["urls"][2].startswith("ws://owner.test:5004/ws/partner?")  # followed the 421
    assert result["states"] == [
        ["connecting", None],
        ["reconnecting", 503],
        ["reconnecting", 421],
        ["offline", 401],
    ]
    assert result["status"]["error"] == {"message": "token expired", "httpStatus": 401}


async def test_client_backoff_is_exponential_with_full_jitter_and_acks_are_confirmed(client_page: Page) -> None:
    result = await client_page.evaluate(
        """async () => {
            const { backoffDelay, createPartnerClient } = await import('/static/partner-client.js');
            const top = [0, 1, 2, 5, 6, 10, 50].map((n) => backoffDelay(n, 500, 30000, () => 0.999999));
            const bottom = backoffDelay(7, 500, 30000, () => 0);
            const client = createPartnerClient({
              url: 'ws://worker.test/ws/partner', restaurantId: 'r1', token: 't', WebSocket: FakeSocket,
              ackOnDisplay: true,
            });
            client.start();
            await waitFor(() => sockets.length === 1, 'a socket');
            const s = sockets[0];
            s.open();
            s.receive({ type: 'PendingOrders', seq: 1, data: { restaurantId: 'r1', orders: [order('A', 1)] } });
            const manual = client.acknowledge('A');
            const acks = s.sent.filter((m) => m.type === 'ack');
            s.receive({ type: 'reply', id: acks[0].id, result: null });
            const confirmed = await manual;
            client.stop();
            return { top, bottom, acks, confirmed, closed: s.closedWith, state: client.status().state };
        }"""
    )
    assert result["top"] == [499, 999, 1999, 15999, 29999, 29999, 29999]
    assert result["bottom"] == 0
    assert [(m["orderId"], m["id"]) for m in result["acks"]] == [("A", "ack-1")]  # one ack, not two
    assert result["confirmed"] == {"orderId": "A", "acknowledgedAt": None}
    assert result["closed"] == 1000 and result["state"] == "offline"
