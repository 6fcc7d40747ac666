"""OMS: client ids, state machine, audit-before-act, positions from fills, reconcile, restore."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from velox.calendar import IST
from velox.errors import ValidationError
from velox.oms import OMS, AuditEvent, MemoryAuditLog
from velox.types import Fill, Order, OrderStatus, Position, Product, Side

T0 = datetime(2024, 4, 1, 9, 15, tzinfo=IST)
S = OrderStatus


class RecordingAudit(MemoryAuditLog):
    """Audit log that snapshots the OMS state at each append (to prove audit-before-act)."""

    def __init__(self) -> None:
        super().__init__("replay")
        self.oms: OMS | None = None
        self.seen: list[tuple[str, str, str | None]] = []

    def append(self, client_id: str, ts: datetime, status: str, payload: dict) -> None:
        assert self.oms is not None
        current = self.oms.orders.get(client_id)
        self.seen.append((client_id, status, current.status.value if current else None))
        super().append(client_id, ts, status, payload)


def _submitted(oms: OMS, qty: int = 10, side: str = "BUY", strategy: str = "s") -> Order:
    o = oms.create(Order("", "NSE:SBIN", side, qty, strategy=strategy), T0)
    oms.transition(o.client_id, S.RISK_CHECKED, T0)
    return oms.transition(o.client_id, S.SUBMITTED, T0)


def test_client_ids_are_run_prefixed_sequences_and_travel_in_the_tag() -> None:
    oms = OMS(MemoryAuditLog(), run_id="P7")
    ids = [oms.create(Order("", "NSE:SBIN", "BUY", 1), T0).client_id for _ in range(3)]
    assert ids == ["P7-1", "P7-2", "P7-3"]
    assert oms.orders["P7-2"].tag == "P7-2"
    with pytest.raises(ValidationError, match="alphanumeric"):
        OMS(MemoryAuditLog(), run_id="bad id")


def test_every_transition_is_audited_before_the_state_changes() -> None:
    audit = RecordingAudit()
    oms = OMS(audit, run_id="R1")
    audit.oms = oms
    o = _submitted(oms)
    oms.on_order_update(o.with_status(S.OPEN, broker_order_id="B1"), T0)
    # at each append the OMS still held the previous status
    assert audit.seen == [
        ("R1-1", "NEW", None),
        ("R1-1", "RISK_CHECKED", "NEW"),
        ("R1-1", "SUBMITTED", "RISK_CHECKED"),
        ("R1-1", "OPEN", "SUBMITTED"),
    ]
    assert oms.orders["R1-1"].broker_order_id == "B1"


def test_invalid_transitions_raise_and_stale_postbacks_are_ignored() -> None:
    oms = OMS(MemoryAuditLog(), run_id="R1")
    o = oms.create(Order("", "NSE:SBIN", "BUY", 10), T0)
    with pytest.raises(ValidationError, match="NEW → SUBMITTED"):
        oms.transition(o.client_id, S.SUBMITTED, T0)
    o = _submitted(oms)
    filled = o.with_status(S.FILLED, filled_qty=10, average_price=100.0, broker_order_id="B")
    assert oms.on_order_update(filled, T0) is not None
    before = len(oms.audit.rows)
    assert oms.on_order_update(o.with_status(S.OPEN), T0) is None  # FILLED → OPEN is stale
    assert len(oms.audit.rows) == before
    assert [x.client_id for x in oms.open_orders()] == ["R1-1"]  # R1-2 filled, R1-1 still NEW


def test_positions_and_pnl_come_from_fills_per_strategy_and_account() -> None:
    oms = OMS(MemoryAuditLog(), run_id="R1")
    a = _submitted(oms, 10, "BUY", "a")
    b = _submitted(oms, 4, "SELL", "b")
    c = _submitted(oms, 6, "SELL", "a")

    def fill(fid: str, order: Order, price: float, charges: float) -> Fill:
        cid, side, qty = order.client_id, order.side, order.qty
        return Fill(fid, cid, "NSE:SBIN", side, qty, price, T0, charges=charges)

    oms.on_fill(fill("f1", a, 100.0, 1.0), T0)
    oms.on_fill(fill("f2", b, 103.0, 0.5), T0)
    oms.on_fill(fill("f3", c, 105.0, 0.7), T0)
    assert oms.on_fill(fill("f3", c, 105.0, 0.7), T0) == []  # duplicate fill id ignored
    # hand-worked: strategy a bought 10 @100, sold 6 @105 → +4 open @100, realised 30
    pa = oms.books["a"].positions[("NSE:SBIN", Product.CNC)]
    assert (pa.qty, pa.average_price, pa.realised_pnl) == (4, 100.0, 30.0)
    assert oms.books["a"].charges == pytest.approx(1.7)
    # strategy b is short 4 @103; the account nets a and b: 10 @100, −4 @103, −6 @105
    assert oms.position_qty("b", "NSE:SBIN") == -4
    assert oms.position_qty(None, "NSE:SBIN") == 0
    acct = oms.account.positions[("NSE:SBIN", Product.CNC)]
    assert acct.realised_pnl == pytest.approx(4 * 3 + 6 * 5)
    assert oms.account.charges == pytest.approx(2.2)
    assert oms.books["a"].unrealised({"NSE:SBIN": 110.0}) == pytest.approx(40.0)


def test_reconcile_reports_mismatches_and_changes_nothing() -> None:
    oms = OMS(MemoryAuditLog(), run_id="R1")
    o = _submitted(oms)
    oms.on_order_update(o.with_status(S.OPEN, broker_order_id="B1"), T0)
    oms.on_fill(Fill("f", "X-9", "NSE:TCS", Side.BUY, 5, 3000.0, T0, strategy="s"), T0)
    broker_orders = [o.with_status(S.OPEN, broker_order_id="B1")]
    good = oms.reconcile(broker_orders, [Position("NSE:TCS", Product.CNC, 5, 3000.0)])
    assert good == []
    problems = oms.reconcile(
        [o.with_status(S.FILLED, filled_qty=10, broker_order_id="B1"),
         Order("R1-99", "NSE:SBIN", "SELL", 1, status=S.OPEN)],
        [Position("NSE:TCS", Product.CNC, 3, 3000.0)],
        [Position("NSE:INFY", Product.CNC, 2, 1500.0)],
    )  # fmt: skip
    text = "\n".join(problems)
    assert "order R1-1: here OPEN filled 0, at the broker FILLED filled 10" in text
    assert "order R1-99 is working at the broker but unknown here" in text
    assert "position NSE:TCS CNC: 5 here, 3 at the broker" in text
    assert "position NSE:INFY CNC: 0 here, 2 at the broker" in text
    assert oms.position_qty(None, "NSE:TCS") == 5  # never "fixed"


def test_restore_rebuilds_orders_positions_and_the_sequence() -> None:
    audit = MemoryAuditLog()
    oms = OMS(audit, run_id="R1")
    a = _submitted(oms, 10)
    oms.on_order_update(a.with_status(S.OPEN, broker_order_id="B1"), T0)
    oms.on_fill(Fill("f1", a.client_id, "NSE:SBIN", Side.BUY, 4, 99.5, T0, charges=0.2), T0)
    oms.on_order_update(
        a.with_status(S.PARTIAL, broker_order_id="B1", filled_qty=4, average_price=99.5), T0
    )
    oms.create(Order("", "NSE:SBIN", "SELL", 1), T0 + timedelta(seconds=1))  # crashed at NEW
    audit.append("R1-RISK", T0, "RISK_KILL", {"limit": "manual"})

    fresh = OMS(audit, run_id="R1")
    risk_rows = fresh.restore(audit.events("R1-"))
    assert [r.status for r in risk_rows] == ["RISK_KILL"]
    assert fresh.seq == 2 and fresh.next_client_id() == "R1-3"
    restored = fresh.orders["R1-1"]
    assert (restored.status, restored.filled_qty, restored.broker_order_id) == (S.PARTIAL, 4, "B1")
    assert fresh.orders["R1-2"].status is S.NEW
    assert fresh.position_qty(None, "NSE:SBIN") == 4
    assert fresh.account.charges == pytest.approx(0.2)
    assert isinstance(audit.rows[0], AuditEvent)


def test_track_takes_an_engine_built_order_as_it_is_and_refuses_others() -> None:
    oms = OMS(MemoryAuditLog(), run_id="R1")
    assert oms.peek_client_id() == "R1-1" and oms.peek_client_id() == "R1-1"  # not taken
    with pytest.raises(ValidationError, match="next client id 'R1-1'"):
        oms.track(Order("R1-7", "NSE:SBIN", "BUY", 1, created_at=T0))
    with pytest.raises(ValidationError, match="creation time"):
        oms.track(Order("R1-1", "NSE:SBIN", "BUY", 1))
    assert oms.seq == 0 and not oms.orders  # refused orders take no id
    order = Order("R1-1", "NSE:SBIN", "SELL", 5, "LIMIT", limit_price=101.5, tag="R1-1",
                  strategy="s", created_at=T0)  # fmt: skip
    assert oms.track(order) is order
    assert oms.peek_client_id() == "R1-2" and oms.open_orders() == [order]
    (row,) = oms.audit.rows
    assert (row.client_id, row.ts, row.status) == ("R1-1", T0, "NEW")
    assert row.payload == {
        "instrument_id": "NSE:SBIN", "side": "SELL", "qty": 5, "order_type": "LIMIT",
        "product": "CNC", "validity": "DAY", "limit_price": 101.5, "trigger_price": None,
        "tag": "R1-1", "strategy": "s",
    }  # fmt: skip


def test_memory_audit_rows_built_on_read_equal_rows_built_at_once() -> None:
    lazy, eager = MemoryAuditLog(), RecordingAudit()  # the subclass gets every row at once
    for audit in (lazy, eager):
        oms = OMS(audit, run_id="R1")
        if isinstance(audit, RecordingAudit):
            audit.oms = oms
        o = _submitted(oms, 10)
        oms.on_order_update(o.with_status(S.OPEN, broker_order_id="B1"), T0)
        oms.on_fill(Fill("B1-10", o.client_id, "NSE:SBIN", Side.BUY, 10, 99.5, T0), T0)
        oms.on_order_update(
            o.with_status(S.FILLED, broker_order_id="B1", filled_qty=10, average_price=99.5), T0
        )
    assert len(eager.seen) == 6  # append() saw each row as it was appended
    rows = [[(r.client_id, r.ts, r.status, r.payload) for r in a.rows] for a in (lazy, eager)]
    assert rows[0] == rows[1]
    fill_row = lazy.rows[4]
    assert fill_row.status == "FILL" and fill_row.payload["ts"] == "2024-04-01T09:15:00+05:30"
    assert fill_row.payload["price"] == 99.5 and fill_row.payload["qty"] == 10
    assert lazy.rows[5].payload == {
        "broker_order_id": "B1", "filled_qty": 10, "average_price": 99.5, "message": ""
    }  # fmt: skip
    lazy.rows[1].payload["x"] = 1  # every row has its own payload dict
    assert lazy.rows[2].payload == {}


def test_submit_audits_risk_checked_and_submitted_before_the_order_moves() -> None:
    audit = RecordingAudit()
    oms = OMS(audit, run_id="R1")
    audit.oms = oms
    o = oms.create(Order("", "NSE:SBIN", "BUY", 10), T0)
    sent = oms.submit(o.client_id, T0)
    assert sent.status is S.SUBMITTED and oms.orders["R1-1"] is sent
    # both rows were appended while the OMS still held the NEW order
    assert audit.seen[1:] == [("R1-1", "RISK_CHECKED", "NEW"), ("R1-1", "SUBMITTED", "NEW")]
    with pytest.raises(ValidationError, match="only a NEW order"):
        oms.submit(o.client_id, T0)
    fresh = OMS(audit, run_id="R1")
    fresh.restore(audit.events("R1-"))
    assert fresh.orders["R1-1"].status is S.SUBMITTED  # the rows replay as two transitions


def test_an_external_fill_closes_the_strategies_it_reduces_and_survives_a_restart() -> None:
    # two strategies long 6 and 4 MIS, a third short 3 elsewhere; the broker squares off 12:
    # 6 and 4 close the longs, 2 are the account's own; charges split by quantity
    audit = MemoryAuditLog("paper")
    oms = OMS(audit, run_id="P1")
    for strategy, qty in (("a", 6), ("b", 4)):
        order = _submitted(oms, qty=qty, strategy=strategy)
        oms.on_fill(Fill(f"F{strategy}", order.client_id, "NSE:SBIN", Side.BUY, qty, 100.0, T0,
                         Product.MIS, strategy=strategy), T0)  # fmt: skip
    square = Fill(
        "SQ-12",
        "SQUAREOFF-1",
        "NSE:SBIN",
        Side.SELL,
        12,
        101.0,
        T0,
        Product.MIS,
        charges=1.2,
        strategy="a",
    )  # the broker's word for the strategy is not taken
    booked = oms.on_fill(square, T0)
    assert [(f.fill_id, f.strategy, f.qty) for f in booked] == [
        ("SQ-12", "a", 6), ("SQ-12/2", "b", 4), ("SQ-12/3", "", 2),
    ]  # fmt: skip
    assert sum(f.charges for f in booked) == pytest.approx(1.2)
    assert booked[0].charges == pytest.approx(0.6)
    assert oms.on_fill(square, T0) == []  # a repeated postback is not booked again
    assert (oms.position_qty("a", "NSE:SBIN"), oms.position_qty("b", "NSE:SBIN")) == (0, 0)
    assert oms.position_qty(None, "NSE:SBIN") == -2
    # a buy from another terminal reduces nobody's position: the account's own
    (own,) = oms.on_fill(Fill("T-1", "TERM-1", "NSE:SBIN", Side.BUY, 5, 99.0, T0, Product.MIS), T0)
    assert own.strategy == "" and oms.position_qty(None, "NSE:SBIN") == 3
    fresh = OMS(audit, run_id="P1")  # restart: the same books from the audit rows
    fresh.restore(audit.rows)
    assert fresh.fill_ids == oms.fill_ids
    for owner in ("a", "b", ""):
        assert fresh.books[owner].positions == oms.books[owner].positions
    assert fresh.account.positions == oms.account.positions
