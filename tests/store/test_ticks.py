"""Ticks: write_ticks and read_ticks (column blocks, binary COPY) against real PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from velox.errors import ValidationError
from velox.store import Store, core

pytestmark = pytest.mark.postgres

IST = "Asia/Kolkata"
NA = pd.NA


def ist(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(stamps), tz=IST, name="ts").as_unit("ns")


def expected_frame(index: pd.DatetimeIndex, **columns: list) -> pd.DataFrame:
    """Return the frame read_ticks must give: every table column, absent ones all NULL."""
    n = len(index)
    out = {}
    for col in ("seq", "price", "qty", "volume", "bid", "ask", "bid_qty", "ask_qty", "oi"):
        values = columns.get(col, [NA] * n)
        if col == "seq":
            out[col] = pd.Series(values, dtype="int64", index=index)
        elif col in ("price", "bid", "ask"):
            out[col] = pd.Series([np.nan if v is NA else v for v in values], index, "float64")
        else:
            out[col] = pd.Series(values, dtype="Int64", index=index)
    return pd.DataFrame(out, index=index)


def test_round_trip_with_nulls_shared_timestamps_and_subseconds(store: Store) -> None:
    # Given out of order; two ticks share 09:15:00.25 and are numbered in the order given.
    index = ist("2024-04-01 09:15:01", "2024-04-01 09:15:00.250", "2024-04-01 09:15:00.250")
    ticks = pd.DataFrame(
        {
            "price": [770.10, 770.00, 770.05],
            "qty": [5, 10, None],
            "volume": [1_250_015, 1_250_010, 1_250_010],
            "bid": [770.05, 769.95, np.nan],
            "ask": [770.10, 770.00, np.nan],
            "bid_qty": [100, 250, None],
            "ask_qty": [50, 75, None],
        },
        index=index,
    )
    assert store.write_ticks("NSE:SBIN", ticks) == 3
    got = store.read_ticks("NSE:SBIN")
    expected = expected_frame(
        ist("2024-04-01 09:15:00.250", "2024-04-01 09:15:00.250", "2024-04-01 09:15:01"),
        seq=[0, 1, 0],
        price=[770.00, 770.05, 770.10],
        qty=[10, NA, 5],
        volume=[1_250_010, 1_250_010, 1_250_015],
        bid=[769.95, NA, 770.05],
        ask=[770.00, NA, 770.10],
        bid_qty=[250, NA, 100],
        ask_qty=[75, NA, 50],
    )
    pd.testing.assert_frame_equal(got, expected)
    assert str(got.index.tz) == IST
    assert store.read_ticks("NSE:OTHER").empty
    pd.testing.assert_frame_equal(store.read_ticks("NSE:OTHER"), expected.iloc[:0])


def test_mapping_of_arrays_with_explicit_seq_and_exact_big_integers(store: Store) -> None:
    big = 2**53 + 1  # not representable as float64: must not pass through one
    columns = {
        "ts": pd.to_datetime(["2024-04-01 03:45:00", "2024-04-01 03:45:00"], utc=True),
        "seq": np.array([7, 3]),
        "price": np.array([22450.5, 22450.0]),
        "oi": pd.array([big, None], dtype="Int64"),
    }
    assert store.write_ticks("NFO:NIFTY24APRFUT", columns) == 2
    expected = expected_frame(
        ist("2024-04-01 09:15", "2024-04-01 09:15"),
        seq=[3, 7],
        price=[22450.0, 22450.5],
        oi=[NA, big],
    )
    pd.testing.assert_frame_equal(store.read_ticks("NFO:NIFTY24APRFUT"), expected)


def test_overlapping_write_replaces_ticks_wholesale_and_keeps_the_rest(store: Store) -> None:
    index = ist("2024-04-01 09:15:00", "2024-04-01 09:15:01", "2024-04-01 09:15:02")
    store.write_ticks("NSE:X", pd.DataFrame({"price": [1.0, 2.0, 3.0], "qty": [1, 2, 3]}, index))
    update = pd.DataFrame(
        {"price": [20.0, 40.0]}, ist("2024-04-01 09:15:01", "2024-04-01 09:15:03")
    )
    assert store.write_ticks("NSE:X", update) == 2
    expected = expected_frame(
        ist("2024-04-01 09:15:00", "2024-04-01 09:15:01", "2024-04-01 09:15:02",
            "2024-04-01 09:15:03"),
        seq=[0, 0, 0, 0],
        price=[1.0, 20.0, 3.0, 40.0],
        qty=[1, NA, 3, NA],  # the replaced tick's qty is gone with it
    )  # fmt: skip
    pd.testing.assert_frame_equal(store.read_ticks("NSE:X"), expected)


def test_read_bounds_are_inclusive_and_naive_means_ist(store: Store) -> None:
    index = ist("2024-04-01 09:15:00", "2024-04-01 15:29:59.999999", "2024-04-02 09:15:00")
    store.write_ticks("NSE:X", pd.DataFrame({"price": [1.0, 2.0, 3.0]}, index))
    assert store.read_ticks("NSE:X", end="2024-04-01")["price"].tolist() == [1.0, 2.0]
    assert store.read_ticks("NSE:X", start="2024-04-01 15:29:59.999999")["price"].tolist() == [
        2.0,
        3.0,
    ]
    assert store.read_ticks("NSE:X", "2024-04-01 09:15", "2024-04-01 09:15")["price"].tolist() == [
        1.0
    ]
    utc = pd.Timestamp("2024-04-02 03:45", tz="UTC")  # 09:15 IST
    assert store.read_ticks("NSE:X", start=utc)["price"].tolist() == [3.0]


def test_bad_ticks_are_rejected_and_write_nothing(store: Store) -> None:
    index = ist("2024-04-01 09:15:00", "2024-04-01 09:15:01")
    good = pd.DataFrame({"price": [1.0, 2.0], "qty": [1, 2]}, index)
    store.write_ticks("NSE:X", good)
    before = store.table_fingerprint("ticks")
    cases = [
        (good.tz_localize(None), "naive"),
        (good.rename(columns={"price": "ltp"}), "unknown columns \\['ltp'\\]"),
        (good.drop(columns="price"), "no 'price' column"),
        (good.assign(qty=[1.5, 2.0]), "'qty' must hold whole numbers"),
        (good.assign(seq=[0, np.nan]), "'seq' has missing values"),
        (pd.concat([good, good.iloc[:1]]).assign(seq=[0, 0, 0]), "duplicate ticks"),
        (good.reset_index(drop=True), "tz-aware timestamps"),
    ]
    for frame, message in cases:
        with pytest.raises(ValidationError, match=message):
            store.write_ticks("NSE:X", frame)
    assert store.write_ticks("NSE:X", good.iloc[:0]) == 0
    assert store.table_fingerprint("ticks") == before


def test_ticks_join_the_callers_transaction(store: Store) -> None:
    ticks = pd.DataFrame({"price": [1.0]}, ist("2024-04-01 09:15"))
    with pytest.raises(RuntimeError, match="late"), store.connect() as conn:
        store.write_ticks("NSE:X", ticks, conn=conn)
        raise RuntimeError("late")
    assert store.read_ticks("NSE:X").empty


def test_block_boundaries_with_nulls(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "TICK_BLOCK_ROWS", 3)
    index = ist(*(f"2024-04-01 09:15:{second:02d}" for second in range(10)))
    qty = [1, None, 3, None, None, 6, 7, 8, None, 10]
    bid = [np.nan, 2.5, np.nan, 4.5, 5.5, np.nan, 7.5, np.nan, 9.5, np.nan]
    ticks = pd.DataFrame({"price": np.arange(10.0), "qty": qty, "bid": bid}, index)
    store.write_ticks("NSE:X", ticks)
    expected = expected_frame(
        index,
        seq=[0] * 10,
        price=list(np.arange(10.0)),
        qty=[NA if q is None else q for q in qty],
        bid=[NA if np.isnan(b) else b for b in bid],
    )
    pd.testing.assert_frame_equal(store.read_ticks("NSE:X"), expected)
    store.write_ticks("NSE:X", ticks.iloc[4:])  # again: blocks read, merged, rewritten
    pd.testing.assert_frame_equal(store.read_ticks("NSE:X"), expected)


def test_stored_ticks_replay_through_the_tick_feed(store: Store) -> None:
    from velox.feeds import TickReplayFeed

    index = ist("2024-04-01 09:15:00.5", "2024-04-01 09:15:01", "2024-04-01 09:15:01")
    store.write_ticks(
        "NSE:X", pd.DataFrame({"price": [10.0, 10.5, 10.25], "volume": [100, 150, None]}, index)
    )
    replayed = [
        (t.ts, t.ltp, t.volume) for t in TickReplayFeed({"NSE:X": store.read_ticks("NSE:X")})
    ]
    assert [(ts.isoformat(), ltp) for ts, ltp, _ in replayed] == [
        ("2024-04-01T09:15:00.500000+05:30", 10.0),
        ("2024-04-01T09:15:01+05:30", 10.5),
        ("2024-04-01T09:15:01+05:30", 10.25),
    ]
    assert [volume for _, _, volume in replayed][:2] == [100, 150]
