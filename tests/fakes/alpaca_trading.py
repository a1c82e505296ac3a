"""A fake Alpaca trading API (v2, paper or live: the same routes) on a loopback HTTP server.

It answers what alpaca-py's ``TradingClient`` (and :class:`live.brokers.alpaca.AlpacaBroker`)
asks for, in Alpaca's wire format (decimals as strings, RFC 3339 times)::

    GET    /v2/account                        -> equity, cash, buying_power, trading_blocked...
    GET    /v2/clock                          -> timestamp, is_open, next_open, next_close
    GET    /v2/positions                      -> [{symbol, qty, side, avg_entry_price, ...}]
    POST   /v2/orders                         -> the new order (200), or 422 / 403
    GET    /v2/orders?status=open|closed|all&limit=&direction=
    GET    /v2/orders:by_client_order_id?client_order_id=   (404 when unknown)
    GET    /v2/orders/{id}                    (404 when unknown)
    DELETE /v2/orders/{id}                    -> 204; 422 when no longer open; 404 when unknown
    GET    /v2/account/activities/FILL?after=&until=&direction=&page_size=&page_token=

Like Alpaca it refuses a second order with the same ``client_order_id`` (422 ``{"code":
40010001, "message": "client_order_id must be unique"}``), an order whose cost exceeds the buying
power (403 ``{"code": 40310000, "message": "insufficient buying power"}``), sub-penny prices and
bad parameters (422), and any request without the right ``APCA-API-KEY-ID`` /
``APCA-API-SECRET-KEY`` headers (401 ``{"code": 40110000, "message": "request is not
authorized"}``). Shorts are reported with ``"side": "short"`` and a negative ``qty`` (or a
positive one with :attr:`FakeAlpacaTrading.negative_short_qty` off).

Test hooks: :meth:`FakeAlpacaTrading.fill` executes (part of) an order - its filled quantity and
average price, the position, the cash and a FILL activity; :meth:`place` puts an order at the
broker as if from elsewhere (the dashboard, another process); :meth:`set_position`.

Faults (those of :class:`FakeVendorServer`, answered in Alpaca's error shape): aim one at a method
(``Fault(..., path="POST /v2/orders")``); the ``"drop"`` kind - the server carries the request out (the order exists) and then loses the answer: it closes the
connection, after ``delay_s`` (longer than the client's timeout: a stalled answer) or at once
(a reset). :meth:`FakeAlpacaTrading.drop_next_order` queues one for the next order POST.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from tests.fakes.vendor_server import FakeVendorServer, Fault, Request, Response

KEY_ID = "PKTRADEKEY0123456789AB"
SECRET = "tRaDeSeCrEt/0123456789abcdefghijklmnopqrstu"
PREFIX = "/v2"
NEW_YORK = timezone(timedelta(hours=-5), "EST")
OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "accepted_for_bidding",
        "pending_cancel",
        "pending_replace",
        "held",
        "calculated",
        "stopped",
        "suspended",
        "pending_review",
    }
)
ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")
TIME_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
ORDERS_MAX_LIMIT = 500
ACTIVITIES_MAX_PAGE = 100


TradingRequest = Request  # requests carry their body (``.json()``)


class TradingServer(FakeVendorServer):
    """:class:`FakeVendorServer` answering faults in Alpaca's error shape."""

    def fault_body(self, status: int) -> dict:
        return {"code": status * 100_000, "message": "internal error"}


class FakeAlpacaTrading:
    """Alpaca's trading routes on ``server``: one account with orders, positions and fills."""

    def __init__(
        self,
        server: TradingServer,
        *,
        key_id: str = KEY_ID,
        secret: str = SECRET,
        cash: float = 100_000.0,
        buying_power: float | None = None,
        equity: float | None = None,
        is_open: bool = True,
        prices: dict[str, float] | None = None,
        negative_short_qty: bool = True,
    ):
        self.server = server
        self.key_id, self.secret = key_id, secret
        self.cash = cash
        self.buying_power = 2 * cash if buying_power is None else buying_power
        self.equity = equity  # None: cash + positions at their last price
        self.trading_blocked = False
        self.is_open = is_open
        self.clock_time = datetime(2024, 3, 5, 10, 0, tzinfo=NEW_YORK)
        self.next_open = datetime(2024, 3, 6, 9, 30, tzinfo=NEW_YORK)
        self.next_close = datetime(2024, 3, 5, 16, 0, tzinfo=NEW_YORK)
        self.prices: dict[str, float] = dict(prices or {})  # for costs of market orders
        self.default_price = 100.0
        self.negative_short_qty = negative_short_qty
        self.orders: dict[str, dict] = {}  # broker id -> wire order, in creation order
        self.positions: dict[str, tuple[int, float]] = {}  # symbol -> (signed qty, avg price)
        self.activities: list[dict] = []
        self._last_fill = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.RLock()
        routes = {
            f"{PREFIX}/account/activities": self._activities,
            f"{PREFIX}/account": self._account,
            f"{PREFIX}/clock": self._clock,
            f"{PREFIX}/orders:by_client_order_id": self._by_client_id,
            f"{PREFIX}/orders": self._orders,
            f"{PREFIX}/positions": self._positions,
        }
        for prefix, route in routes.items():
            server.route(prefix, self._authed(route))

    @property
    def url(self) -> str:
        return self.server.url

    # -- faults and records ---------------------------------------------------------------------
    def fail_next(self, *faults: Fault) -> None:
        """Queue faults; a fault whose path is the default "/" is aimed at the trading routes."""
        self.server.fail_next(*(replace(f, path=PREFIX) if f.path == "/" else f for f in faults))

    def drop_next_order(self, stall_s: float = 0.0) -> None:
        """The next order POST creates the order, then loses the answer: the connection closes
        after ``stall_s`` (beyond the client's timeout: it times out) or at once (a reset)."""
        self.server.fail_next(Fault("drop", delay_s=stall_s, path=f"POST {PREFIX}/orders"))

    def requests(self, method: str | None = None, path: str | None = None) -> list[TradingRequest]:
        """Requests received (to ``path`` exactly when given), optionally of one ``method``."""
        return [
            r
            for r in self.server.requests_to(PREFIX)
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]  # type: ignore[misc]

    def order(self, client_order_id: str) -> dict | None:
        with self._lock:
            found = [o for o in self.orders.values() if o["client_order_id"] == client_order_id]
        return dict(found[0]) if found else None

    # -- test hooks -----------------------------------------------------------------------------
    def set_position(self, symbol: str, qty: int, avg_price: float) -> None:
        with self._lock:
            if qty:
                self.positions[symbol] = (qty, avg_price)
            else:
                self.positions.pop(symbol, None)
            self.prices.setdefault(symbol, avg_price)

    def place(
        self,
        symbol: str,
        qty: int,
        side: str = "buy",
        *,
        type: str = "market",
        client_order_id: str | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
        status: str = "new",
    ) -> dict:
        """An order at the broker that did not come through the API under test."""
        with self._lock:
            order = self._new_order(
                {
                    "symbol": symbol,
                    "qty": qty,
                    "side": side,
                    "type": type,
                    "time_in_force": "day",
                    "limit_price": limit_price,
                    "stop_price": stop_price,
                    "client_order_id": client_order_id or str(uuid.uuid4()),
                },
                Decimal(qty),
            )
            order["status"] = status
            return dict(order)

    def fill(
        self, client_order_id: str, qty: int, price: float, *, at: datetime | None = None
    ) -> dict:
        """Execute ``qty`` more shares of the open order at ``price``; returns the FILL activity.

        ``at`` (default: now, kept strictly increasing by the millisecond) is the activity's
        ``transaction_time``; its id is Alpaca's ``<yyyymmddHHMMSSmmm>::<uuid>``."""
        with self._lock:
            order = next(
                (o for o in self.orders.values() if o["client_order_id"] == client_order_id), None
            )
            if order is None:
                raise KeyError(f"no order {client_order_id!r} at the fake")
            if order["status"] not in OPEN_STATUSES:
                raise ValueError(f"order {client_order_id} is {order['status']}, not open")
            total, done = int(Decimal(order["qty"])), int(Decimal(order["filled_qty"]))
            if not 0 < qty <= total - done:
                raise ValueError(f"fill of {qty} for {client_order_id}: {total - done} left")
            if at is None:
                at = max(datetime.now(UTC), self._last_fill + timedelta(milliseconds=1))
            at = at.astimezone(UTC)
            self._last_fill = max(self._last_fill, at)
            avg = Decimal(order["filled_avg_price"] or 0)
            filled = done + qty
            new_avg = (avg * done + Decimal(repr(price)) * qty) / filled
            order.update(
                filled_qty=str(filled),
                filled_avg_price=str(new_avg.quantize(Decimal("0.0001"))),
                status="filled" if filled == total else "partially_filled",
                updated_at=_wire_time(at),
            )
            if filled == total:
                order["filled_at"] = _wire_time(at)
            symbol, buy = order["symbol"], order["side"] == "buy"
            held, held_avg = self.positions.get(symbol, (0, 0.0))
            signed = qty if buy else -qty
            side = "buy" if buy else ("sell_short" if held - qty < 0 else "sell")
            now_held = held + signed
            if now_held == 0:
                self.positions.pop(symbol, None)
            elif held == 0 or (held > 0) != (now_held > 0):  # opened or flipped
                self.positions[symbol] = (now_held, price)
            elif abs(now_held) > abs(held):  # added
                self.positions[symbol] = (
                    now_held,
                    (held_avg * abs(held) + price * qty) / abs(now_held),
                )
            else:  # reduced
                self.positions[symbol] = (now_held, held_avg)
            self.cash += -qty * price if buy else qty * price
            self.prices[symbol] = price
            activity = {
                "id": f"{at:%Y%m%d%H%M%S}{at.microsecond // 1000:03d}::{uuid.uuid4()}",
                "activity_type": "FILL",
                "transaction_time": _wire_time(at),
                "type": "fill" if filled == total else "partial_fill",
                "price": str(price),
                "qty": str(qty),
                "side": side,
                "symbol": symbol,
                "leaves_qty": str(total - filled),
                "order_id": order["id"],
                "cum_qty": str(filled),
                "order_status": order["status"],
            }
            self.activities.append(activity)
            return dict(activity)

    # -- serving --------------------------------------------------------------------------------
    def _authed(self, route):
        def handle(request: Request) -> Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            if (
                headers.get("apca-api-key-id") != self.key_id
                or headers.get("apca-api-secret-key") != self.secret
            ):
                return Response(401, {"code": 40110000, "message": "request is not authorized"})
            with self._lock:
                return route(request)

        return handle

    def _account(self, request: Request) -> Response:
        if request.path.rstrip("/") != f"{PREFIX}/account":
            return _not_found(request)
        long_value = sum(q * self._price(s) for s, (q, _) in self.positions.items() if q > 0)
        short_value = sum(q * self._price(s) for s, (q, _) in self.positions.items() if q < 0)
        equity = self.cash + long_value + short_value if self.equity is None else self.equity
        return Response(
            200,
            {
                "id": "3f6b1d2e-0000-4000-8000-000000000001",
                "account_number": "PA0FAKE00001",
                "status": "ACTIVE",
                "crypto_status": "ACTIVE",
                "currency": "USD",
                "buying_power": _num(self.buying_power),
                "regt_buying_power": _num(self.buying_power),
                "daytrading_buying_power": _num(self.buying_power * 2),
                "non_marginable_buying_power": _num(max(self.cash, 0.0)),
                "cash": _num(self.cash),
                "accrued_fees": "0",
                "portfolio_value": _num(equity),
                "pattern_day_trader": False,
                "trading_blocked": self.trading_blocked,
                "transfers_blocked": False,
                "account_blocked": False,
                "created_at": "2023-01-03T14:00:00.000000Z",
                "trade_suspended_by_user": False,
                "multiplier": "2",
                "shorting_enabled": True,
                "equity": _num(equity),
                "last_equity": _num(equity),
                "long_market_value": _num(long_value),
                "short_market_value": _num(short_value),
                "initial_margin": "0",
                "maintenance_margin": "0",
                "sma": "0",
                "daytrade_count": 0,
            },
        )

    def _clock(self, request: Request) -> Response:
        return Response(
            200,
            {
                "timestamp": self.clock_time.isoformat(),
                "is_open": self.is_open,
                "next_open": self.next_open.isoformat(),
                "next_close": self.next_close.isoformat(),
            },
        )

    def _positions(self, request: Request) -> Response:
        if request.path.rstrip("/") != f"{PREFIX}/positions":
            return _not_found(request)
        rows = []
        for symbol, (qty, avg) in sorted(self.positions.items()):
            price = self._price(symbol)
            wire_qty = qty if qty > 0 or self.negative_short_qty else -qty
            rows.append(
                {
                    "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)),
                    "symbol": symbol,
                    "exchange": "NASDAQ",
                    "asset_class": "us_equity",
                    "asset_marginable": True,
                    "avg_entry_price": _num(avg),
                    "qty": str(wire_qty),
                    "qty_available": str(wire_qty),
                    "side": "long" if qty > 0 else "short",
                    "market_value": _num(qty * price),
                    "cost_basis": _num(qty * avg),
                    "unrealized_pl": _num(qty * (price - avg)),
                    "unrealized_plpc": "0",
                    "unrealized_intraday_pl": _num(qty * (price - avg)),
                    "unrealized_intraday_plpc": "0",
                    "current_price": _num(price),
                    "lastday_price": _num(price),
                    "change_today": "0",
                }
            )
        return Response(200, rows)

    def _by_client_id(self, request: Request) -> Response:
        coid = request.query.get("client_order_id")
        if not coid:
            return _invalid("client_order_id is missing")
        for order in self.orders.values():
            if order["client_order_id"] == coid:
                return Response(200, order)
        return Response(404, {"code": 40410000, "message": f"order not found for {coid}"})

    def _orders(self, request: Request) -> Response:
        rest = request.path.removeprefix(f"{PREFIX}/orders").strip("/")
        if not rest:
            if request.method == "POST":
                return self._create(request)
            if request.method == "GET":
                return self._list(request)
            return Response(405, {"code": 40510000, "message": "method not allowed"})
        order = self.orders.get(rest)
        if order is None:
            return Response(404, {"code": 40410000, "message": "order not found"})
        if request.method == "GET":
            return Response(200, order)
        if request.method == "DELETE":
            if order["status"] not in OPEN_STATUSES:
                return Response(
                    422,
                    {"code": 42210000, "message": f'order is already in "{order["status"]}" state'},
                )
            now = _wire_time(datetime.now(UTC))
            order.update(status="canceled", canceled_at=now, updated_at=now)
            return Response(204, b"")
        return Response(405, {"code": 40510000, "message": "method not allowed"})

    def _list(self, request: Request) -> Response:
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            return _invalid(f"invalid status: {status}")
        try:
            limit = int(q.get("limit") or 50)
        except ValueError:
            return _invalid(f"invalid limit: {q.get('limit')}")
        if not 1 <= limit <= ORDERS_MAX_LIMIT:
            return _invalid(f"invalid limit: {limit}")
        orders = [
            o
            for o in self.orders.values()
            if status == "all" or (o["status"] in OPEN_STATUSES) == (status == "open")
        ]
        symbols = [s for s in q.get("symbols", "").split(",") if s]
        if symbols:
            orders = [o for o in orders if o["symbol"] in symbols]
        orders.sort(key=lambda o: o["submitted_at"], reverse=q.get("direction", "desc") == "desc")
        return Response(200, orders[:limit])

    def _create(self, request: Request) -> Response:
        try:
            body = json.loads(getattr(request, "body", b"") or b"null")
        except ValueError:
            return _invalid("request body format is invalid")
        if not isinstance(body, dict):
            return _invalid("request body format is invalid")
        if not body.get("symbol"):
            return _invalid("symbol is required")
        if body.get("notional") is not None:
            return _invalid("notional orders are not supported by this fake")
        try:
            qty = Decimal(str(body.get("qty")))
        except InvalidOperation:
            return _invalid("qty is required")
        if qty <= 0 or qty != int(qty):
            return _invalid(f"invalid qty: {body.get('qty')}")
        if body.get("side") not in ("buy", "sell"):
            return _invalid(f"invalid side: {body.get('side')}")
        kind = body.get("type")
        if kind not in ORDER_TYPES:
            return _invalid(f"invalid order type: {kind}")
        if body.get("time_in_force") not in TIME_IN_FORCE:
            return _invalid(f"invalid time_in_force: {body.get('time_in_force')}")
        for field, needed in (
            ("limit_price", kind in ("limit", "stop_limit")),
            ("stop_price", kind in ("stop", "stop_limit")),
        ):
            value = body.get(field)
            if needed and value is None:
                return _invalid(f"{field} is required for {kind} orders")
            if value is not None:
                price = Decimal(str(value))
                places = 2 if price >= 1 else 4
                if price <= 0 or price != price.quantize(Decimal(1).scaleb(-places)):
                    return _invalid(
                        f"invalid {field} {value}. sub-penny increment does not fulfill "
                        "minimum pricing criteria"
                    )
        coid = body.get("client_order_id") or str(uuid.uuid4())
        if len(coid) > 128:
            return _invalid("client_order_id must be no more than 128 characters")
        if any(o["client_order_id"] == coid for o in self.orders.values()):
            return Response(422, {"code": 40010001, "message": "client_order_id must be unique"})
        symbol = body["symbol"]
        held = self.positions.get(symbol, (0, 0.0))[0]
        opening = int(qty) if body["side"] == "buy" else max(0, int(qty) - max(held, 0))
        unit = body.get("limit_price") or body.get("stop_price") or self._price(symbol)
        cost = Decimal(opening) * Decimal(str(unit))
        if opening and cost > Decimal(str(self.buying_power)):
            return Response(
                403,
                {
                    "buying_power": _num(self.buying_power),
                    "code": 40310000,
                    "cost_basis": str(cost),
                    "message": "insufficient buying power",
                },
            )
        return Response(200, dict(self._new_order({**body, "client_order_id": coid}, qty)))

    def _new_order(self, body: dict, qty: Decimal) -> dict:
        now = _wire_time(datetime.now(UTC))
        broker_id = str(uuid.uuid4())
        order = {
            "id": broker_id,
            "client_order_id": body["client_order_id"],
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "expired_at": None,
            "canceled_at": None,
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])),
            "symbol": body["symbol"],
            "asset_class": "us_equity",
            "notional": None,
            "qty": str(int(qty)),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "",
            "order_type": body["type"],
            "type": body["type"],
            "side": body["side"],
            "position_intent": "buy_to_open" if body["side"] == "buy" else "sell_to_close",
            "time_in_force": body["time_in_force"],
            "limit_price": None if body.get("limit_price") is None else str(body["limit_price"]),
            "stop_price": None if body.get("stop_price") is None else str(body["stop_price"]),
            "status": "new",
            "extended_hours": bool(body.get("extended_hours")),
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }
        self.orders[broker_id] = order
        return order

    def _activities(self, request: Request) -> Response:
        kind = request.path.removeprefix(f"{PREFIX}/account/activities").strip("/")
        kinds = kind or request.query.get("activity_types", "")
        q = request.query
        if kinds and "FILL" not in kinds.split(","):
            return Response(200, [])  # this fake records only fills
        try:
            page_size = int(q.get("page_size") or ACTIVITIES_MAX_PAGE)
            after = _parse_time(q["after"]) if q.get("after") else None
            until = _parse_time(q["until"]) if q.get("until") else None
        except ValueError as exc:
            return _invalid(f"invalid request: {exc}")
        if not 1 <= page_size <= ACTIVITIES_MAX_PAGE:
            return _invalid(f"invalid page_size: {page_size}")
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc"):
            return _invalid(f"invalid direction: {direction}")
        rows = [
            a
            for a in self.activities
            if (after is None or _parse_time(a["transaction_time"]) > after)
            and (until is None or _parse_time(a["transaction_time"]) < until)
        ]
        rows.sort(key=lambda a: a["id"], reverse=direction == "desc")
        token = q.get("page_token")
        if token:
            rows = [a for a in rows if (a["id"] > token if direction == "asc" else a["id"] < token)]
        return Response(200, rows[:page_size])

    def _price(self, symbol: str) -> float:
        return self.prices.get(symbol, self.default_price)


def _invalid(message: str) -> Response:
    return Response(422, {"code": 40010001, "message": message})


def _not_found(request: Request) -> Response:
    return Response(404, {"code": 40410000, "message": f"endpoint not found: {request.path}"})


def _num(value: float) -> str:
    return format(Decimal(repr(float(value))).normalize(), "f")


def _wire_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str) -> datetime:
    # a "+" that reached the server unescaped decodes to a space
    moment = datetime.fromisoformat(value.replace(" ", "+").replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
