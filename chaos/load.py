"""The load driver: customers ordering through the JSON API, retrying through every outage.

Each customer is a thread with an account of its own (``POST /api/register``, ``/api/login``):
add to cart, check out with a good or a declined card, sometimes cancel. During an outage the API
answers 5xx or not at all; the driver retries with backoff. A checkout whose answer was lost is
*ambiguous*: the driver then asks ``GET /api/orders`` whether a new order appeared (a customer
places one order at a time, so a new id is that checkout) before trying again — so the driver
knows which orders were committed, and never places one twice by accident.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

GOOD_CARD = {"number": "4222222222222", "exp_month": 12, "exp_year": 2099, "cvv": "123"}
DECLINED_CARD = {"number": "4000000000000002", "exp_month": 12, "exp_year": 2099, "cvv": "123"}
ADDRESS = {
    "name": "Ada Lovelace",
    "street": "12 Marathon Road",
    "city": "Springfield",
    "zip": "12345",
    "country": "US",
}
PASSWORD = "chaos-Monkey-2026!"


class Unavailable(Exception):
    """No usable answer (connection refused/reset, timeout, 5xx): try again later."""


@dataclass
class OrderRecord:
    """What the driver knows about one committed order."""

    order_id: int
    customer: str
    card: str  # "good" | "declined"
    placed_at: float  # wall clock when the checkout was answered (or found)
    recovered: bool  # the checkout's answer was lost; found with GET /api/orders
    cancel_planned: bool
    cancel: str = ""  # "" | "ok" (200) | "refused" (409) | "ambiguous" (answer lost, then 409)


@dataclass
class Api:
    """A tiny JSON client over http.client (one connection per call: no stale keep-alive)."""

    port: int
    timeout: float = 10.0
    errors: Counter[str] = field(default_factory=Counter)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, f"/api{path}", None if body is None else json.dumps(body), headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.errors[type(exc).__name__] += 1
            raise Unavailable(f"{method} {path}: {exc!r}") from exc
        finally:
            conn.close()
        if response.status >= 500:
            self.errors[f"HTTP {response.status}"] += 1
            raise Unavailable(f"{method} {path}: HTTP {response.status}")
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return response.status, data


class Customer(threading.Thread):
    """One customer placing orders at a steady pace until told to stop."""

    def __init__(self, driver: LoadDriver, index: int) -> None:
        super().__init__(name=f"customer-{index}", daemon=True)
        self.driver = driver
        self.api = driver.api
        self.rng = random.Random(driver.seed * 1000 + index)
        self.username = f"chaos-{driver.tag}-{index}"
        self.token = ""
        self.known: set[int] = set()
        self.problems: list[str] = []

    # -- plumbing ------------------------------------------------------------------------------
    def _retry(self, what: str, attempt: Any) -> Any:
        """Call ``attempt()`` until it stops raising Unavailable (or the driver gives up)."""
        delay = 0.1
        while True:
            try:
                return attempt()
            except Unavailable:
                if self.driver.abandoned.is_set():
                    raise
                self.driver.retries[what] += 1
                time.sleep(delay * (0.5 + self.rng.random()))
                delay = min(delay * 2, 2.0)

    def _authed(self, method: str, path: str, body: Any = None) -> tuple:
        status, data = self.api.call(method, path, body, self.token)
        if status == 401:  # token expired (or the login's answer was lost): log in again
            self._login()
            status, data = self.api.call(method, path, body, self.token)
        return status, data

    def _register(self) -> None:
        body = {"username": self.username, "email": f"{self.username}@example.com"}
        status, data = self._retry(
            "register", lambda: self.api.call("POST", "/register", {**body, "password": PASSWORD})
        )
        if status not in (201, 422):  # 422: taken, i.e. an earlier attempt of ours committed
            raise RuntimeError(f"register {self.username}: {status} {data}")

    def _login(self) -> None:
        body = {"username": self.username, "password": PASSWORD}
        status, data = self._retry("login", lambda: self.api.call("POST", "/login", body))
        if status != 200:
            raise RuntimeError(f"login {self.username}: {status} {data}")
        self.token = data["access_token"]

    def _order_ids(self) -> set[int]:
        status, data = self._retry("list", lambda: self._authed("GET", "/orders"))
        if status != 200:
            raise RuntimeError(f"list orders: {status} {data}")
        return {order["id"] for order in data}

    # -- one order -----------------------------------------------------------------------------
    def _add_to_cart(self) -> None:
        body = {"product_id": self.driver.product_id, "quantity": 1}
        status, data = self._retry("cart", lambda: self._authed("POST", "/cart/items", body))
        if status != 201:
            raise RuntimeError(f"add to cart: {status} {data}")

    def _checkout(self, card: str) -> OrderRecord:
        body = {
            "address": ADDRESS,
            "delivery": "standard",
            "card": GOOD_CARD if card == "good" else DECLINED_CARD,
        }
        recovered = False
        while True:
            try:
                status, data = self._authed("POST", "/orders", body)
            except Unavailable:
                status, data = None, None
            if status == 201:
                order_id = data["id"]
                break
            if status not in (None, 422):
                raise RuntimeError(f"checkout: {status} {data}")
            # Lost answer, or 422 (an empty cart: an earlier attempt committed): did it commit?
            new = self._order_ids() - self.known
            if new:
                (order_id,) = new
                recovered = True
                self.driver.ambiguous["checkout"] += 1
                break
            if status == 422:
                raise RuntimeError(f"checkout refused: {data}")
            if self.driver.abandoned.is_set():
                raise Unavailable("gave up")
            self.driver.retries["checkout"] += 1
            time.sleep(0.2 + self.rng.random() * 0.5)
        self.known.add(order_id)
        return OrderRecord(
            order_id=order_id,
            customer=self.username,
            card=card,
            placed_at=time.time(),
            recovered=recovered,
            cancel_planned=False,
        )

    def _cancel(self, record: OrderRecord) -> None:
        lost = False
        while True:
            try:
                status, data = self._authed("POST", f"/orders/{record.order_id}/cancel")
            except Unavailable:
                if self.driver.abandoned.is_set():
                    record.cancel = "ambiguous"
                    return
                lost = True
                self.driver.retries["cancel"] += 1
                time.sleep(0.2 + self.rng.random() * 0.5)
                continue
            if status == 200:
                record.cancel = "ok"
            elif status == 409:
                record.cancel = "ambiguous" if lost else "refused"
            else:
                raise RuntimeError(f"cancel {record.order_id}: {status} {data}")
            return

    def run(self) -> None:
        try:
            self._register()
            self._login()
            interval = self.driver.customers / self.driver.rate
            next_at = time.monotonic() + self.rng.random() * interval
            while not self.driver.stopping.is_set():
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                next_at = max(next_at + interval, time.monotonic())
                card = "declined" if self.rng.random() < self.driver.declined_share else "good"
                cancel = self.rng.random() < self.driver.cancel_share
                self._add_to_cart()
                record = self._checkout(card)
                record.cancel_planned = cancel
                self.driver.add(record)
                if cancel:
                    time.sleep(self.rng.random() * 0.6)  # sometimes before, sometimes after paid
                    self._cancel(record)
        except Unavailable as exc:
            self.problems.append(f"{self.username}: gave up: {exc}")
        except Exception as exc:
            self.problems.append(f"{self.username}: {type(exc).__name__}: {exc}")


class LoadDriver:
    """``customers`` threads together placing about ``rate`` orders per second."""

    def __init__(
        self,
        *,
        port: int,
        product_id: int,
        rate: float,
        customers: int,
        seed: int,
        declined_share: float = 0.2,
        cancel_share: float = 0.2,
    ) -> None:
        self.api = Api(port)
        self.product_id = product_id
        self.rate = rate
        self.customers = customers
        self.seed = seed
        self.tag = uuid.uuid4().hex[:6]
        self.declined_share = declined_share
        self.cancel_share = cancel_share
        self.stopping = threading.Event()  # finish the order in hand, then stop
        self.abandoned = threading.Event()  # stop retrying (the run is over)
        self.orders: list[OrderRecord] = []
        self.retries: Counter[str] = Counter()
        self.ambiguous: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._threads = [Customer(self, i) for i in range(customers)]

    def add(self, record: OrderRecord) -> None:
        with self._lock:
            self.orders.append(record)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 60) -> list[str]:
        """Stop placing orders; wait for the ones in hand; return what went wrong."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.abandoned.set()
        for thread in self._threads:
            thread.join(15)
        problems = [p for t in self._threads for p in t.problems]
        problems += [f"{t.name} did not stop" for t in self._threads if t.is_alive()]
        return problems

    @property
    def placed(self) -> int:
        with self._lock:
            return len(self.orders)
