"""Ticks stored as column blocks: migration 0003, the ``ticks`` view, merges, block limits."""

from __future__ import annotations

import math
import struct
import threading

import numpy as np
import pandas as pd
import psycopg
import pytest

from velox.store import Store, core, migrate

pytestmark = pytest.mark.postgres

IST = "Asia/Kolkata"
NA = pd.NA
COLUMNS = ("seq", "price", "qty", "volume", "bid", "ask", "bid_qty", "ask_qty", "oi")
FLOATS = ("price", "bid", "ask")
BIG = 2**53 + 1  # not representable as float64


def frame(rows: list[tuple]) -> pd.DataFrame:
    """Return the frame read_ticks must give for rows (ts, seq, price, …, oi); None is NULL."""
    index = pd.DatetimeIndex([r[0] for r in rows], name="ts").tz_convert(IST).as_unit("ns")
    data = {}
    for i, col in enumerate(COLUMNS, start=1):
        values = [r[i] for r in rows]
        if col == "seq":
            data[col] = pd.Series(values, index, "int64")
        elif col in FLOATS:
            data[col] = pd.Series([np.nan if v is None else v for v in values], index, "float64")
        else:
            data[col] = pd.Series([NA if v is None else v for v in values], index, "Int64")
    return pd.DataFrame(data, index=index)


def ints(values: np.ndarray, missing: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.asarray(values, np.int64), np.asarray(missing, bool))


def bits(value: object) -> object:
    """Return a value comparable bit for bit: floats as their IEEE 754 bytes (-0.0, NaN)."""
    return struct.pack(">d", value) if isinstance(value, float) else value


def view_rows(conn: psycopg.Connection, instrument_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT ts, " + ", ".join(COLUMNS) + " FROM ticks WHERE instrument_id = %s"
        " ORDER BY ts, seq",
        (instrument_id,),
    ).fetchall()


def frame_rows(df: pd.DataFrame) -> list[tuple]:
    """Return ``df`` as view-like tuples (python values, None for missing)."""
    out = []
    for ts, row in zip(df.index, df.itertuples(index=False), strict=True):
        values = []
        for col, value in zip(COLUMNS, row, strict=True):
            if col in FLOATS:
                values.append(float(value))
            else:
                values.append(None if value is NA else int(value))
        out.append((ts.to_pydatetime(), *values))
    return out


def assert_same_rows(got: list[tuple], expected: list[tuple], nan_is_null: tuple = ()) -> None:
    """Compare rows exactly; a NaN in an ``nan_is_null`` position matches None."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        e = tuple(
            None if i in nan_is_null and isinstance(v, float) and math.isnan(v) else v
            for i, v in enumerate(e)
        )
        assert tuple(map(bits, g)) == tuple(map(bits, e)), (g, e)


def blocks(conn: psycopg.Connection, instrument_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT ts, last_ts, tick_count FROM tick_blocks WHERE series_id ="
        " (SELECT id FROM tick_series WHERE instrument_id = %s) ORDER BY ts",
        (instrument_id,),
    ).fetchall()


#: Hand-made ticks of one instrument as a 0002-era store held them (ts, seq, price, qty,
#: volume, bid, ask, bid_qty, ask_qty, oi): NULLs, a shared timestamp, microseconds, int8
#: extremes and float8 special values.
SBIN = [
    ("2024-04-01 09:15:00.25+05:30", 0, 770.00, 10, 1_250_010, 769.95, 770.00, 250, 75, None),
    ("2024-04-01 09:15:00.25+05:30", 1, 770.05, None, 1_250_010, None, None, None, None, None),
    ("2024-04-01 09:15:01+05:30", 0, 770.10, 5, 1_250_015, 770.05, 770.10, 100, 50, BIG),
    ("2024-04-01 09:15:01.000001+05:30", 0, math.nan, 1, 1_250_016, -0.0, math.inf, 0,
     -(2**63), 2**63 - 1),
    ("2024-04-02 09:15:00+05:30", 3, 5e-324, 2, 7, 1.7976931348623157e308,
     2.2250738585072014e-308, 1, 1, 0),
]  # fmt: skip
MANY = 40_000  # ticks of NSE:MANY, generated in SQL: three per timestamp, three blocks


def many_expected() -> pd.DataFrame:
    """Return NSE:MANY as pandas computes it from the formulas of the SQL insert below."""
    i = np.arange(MANY)
    index = pd.DatetimeIndex(
        pd.Timestamp("2024-04-01 09:15", tz=IST) + pd.to_timedelta(i // 3, unit="s"), name="ts"
    ).as_unit("ns")
    price = 100 + i * 0.25
    return pd.DataFrame(
        {
            "seq": i % 3,
            "price": price,
            "qty": ints(i, i % 7 == 0),
            "volume": pd.array(i * 10, "Int64"),
            "bid": np.where(i % 11 == 0, np.nan, price - 0.25),
            "ask": price + 0.25,
            "bid_qty": pd.array(i % 5, "Int64"),
            "ask_qty": pd.array([NA] * MANY, "Int64"),
            "oi": pd.array(2**53 + i, "Int64"),
        },
        index=index,
    )


def test_migration_0003_keeps_the_ticks_of_an_existing_0002_store(
    pg_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.new_database()
    shipped = migrate.migration_files()
    assert [v for v, _, _ in shipped][:3] == [1, 2, 3]
    monkeypatch.setattr(migrate, "migration_files", lambda: shipped[:2])
    Store(url)  # a store as Velox left it before 0003
    with psycopg.connect(url) as conn:
        for row in SBIN:
            conn.execute(
                "INSERT INTO ticks (instrument_id, ts, seq, price, qty, volume, bid, ask,"
                " bid_qty, ask_qty, oi) VALUES ('NSE:SBIN', %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s)",
                row,
            )
        conn.execute(
            "INSERT INTO ticks (instrument_id, ts, seq, price, qty, volume, bid, ask, bid_qty,"
            " oi) SELECT 'NSE:MANY', timestamptz '2024-04-01 09:15+05:30'"
            " + (i / 3) * interval '1 second', i %% 3, 100 + i * 0.25,"
            " CASE WHEN i %% 7 <> 0 THEN i END, i * 10,"
            " CASE WHEN i %% 11 <> 0 THEN 100 + i * 0.25 - 0.25 END, 100 + i * 0.25 + 0.25,"
            " i %% 5, 9007199254740992 + i FROM generate_series(0, %s) AS i",
            (MANY - 1,),
        )
    monkeypatch.undo()

    store = Store(url)  # applies 0003
    sbin = frame([(pd.Timestamp(r[0]), *r[1:]) for r in SBIN])
    got = store.read_ticks("NSE:SBIN")
    pd.testing.assert_frame_equal(got, sbin)
    assert np.signbit(got["bid"].iloc[3]) and math.isnan(got["price"].iloc[3])
    pd.testing.assert_frame_equal(store.read_ticks("NSE:MANY"), many_expected())
    with store.connect() as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'ticks'").fetchone()
        # The view gives back the rows exactly as they were inserted (NaN, -0.0, 2^63 - 1).
        inserted = [(pd.Timestamp(r[0]).to_pydatetime(), *r[1:]) for r in SBIN]
        assert_same_rows(view_rows(conn, "NSE:SBIN"), inserted)
        many = blocks(conn, "NSE:MANY")
        ask_qty_stored = conn.execute(
            "SELECT count(ask_qty), count(qty) FROM tick_blocks b JOIN tick_series s"
            " ON s.id = b.series_id WHERE s.instrument_id = 'NSE:MANY'"
        ).fetchone()
    assert versions == [v for v, _, _ in shipped]
    assert kind == ("v",)
    assert len(many) == 3 and sum(n for _, _, n in many) == MANY
    assert all(a[1] < b[0] for a, b in zip(many, many[1:], strict=False))  # no shared timestamp
    assert max(n for _, _, n in many) <= 16_384 + 2  # the last run of three may overhang
    assert ask_qty_stored == (0, 3)  # a column NULL throughout a block stores nothing

    # Writes after the migration: a migrated series is upserted, a new one gets its own id.
    update = pd.DataFrame(
        {"price": [771.0], "seq": [0]}, pd.DatetimeIndex(["2024-04-01 09:15:01"], tz=IST)
    )
    assert store.write_ticks("NSE:SBIN", update) == 1
    replaced = list(SBIN)
    replaced[2] = (replaced[2][0], 0, 771.0, *[None] * 7)
    expected = frame([(pd.Timestamp(r[0]), *r[1:]) for r in replaced])
    pd.testing.assert_frame_equal(store.read_ticks("NSE:SBIN"), expected)
    store.write_ticks("NSE:NEW", update)
    pd.testing.assert_frame_equal(store.read_ticks("NSE:NEW"), expected.iloc[2:3])
    with store.connect() as conn:
        ids = conn.execute("SELECT count(DISTINCT id), count(*) FROM tick_series").fetchone()
    assert ids == (3, 3)


def test_view_decodes_the_blocks_bit_for_bit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "TICK_BLOCK_ROWS", 2)
    special = [0.1, -0.0, math.inf, -math.inf, 5e-324, 2.2250738585072014e-308,
               1.7976931348623157e308, -770.05, math.nan, 1.0]  # fmt: skip
    n = len(special)
    index = pd.date_range("2024-04-01 09:15", periods=n, freq="250ms", tz=IST)
    ticks = pd.DataFrame(
        {
            "price": special,
            "bid": special[::-1],
            "qty": pd.array([1, None, 3, -(2**63), 2**63 - 1, BIG, None, 0, 9, 10], "Int64"),
            "oi": pd.array([None, None, 7, 8, None, None, None, None, None, None], "Int64"),
        },
        index=index,
    )
    store.write_ticks("NSE:X", ticks)
    got = store.read_ticks("NSE:X")
    with store.connect() as conn:
        rows = view_rows(conn, "NSE:X")
        stored = conn.execute(
            "SELECT count(*), count(oi), count(nulls), count(ask) FROM tick_blocks"
        ).fetchone()
        plan = conn.execute("EXPLAIN VERBOSE SELECT price, qty FROM ticks").fetchall()
    # The decoders are inlined into the view (a function call per value costs ~20x more).
    assert not any("velox_" in line for (line,) in plan), plan
    # bid and ask (positions 5, 6) are NULL where read_ticks shows NaN.
    assert_same_rows(rows, frame_rows(got), nan_is_null=(5, 6))
    assert [bits(v) for v in got["price"]] == [bits(v) for v in special]
    assert stored == (5, 1, 5, 0)  # oi only in the block of ticks 2-3; ask never given


def test_block_bounds_cut_between_timestamps_only() -> None:
    ts = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4, 5])
    assert core._block_bounds(ts, 12) == [(0, 12)]
    assert core._block_bounds(ts, 4) == [(0, 4), (4, 7), (7, 12)]  # 8 is inside a run
    assert core._block_bounds(ts, 1) == [(0, 3), (3, 4), (4, 6), (6, 7), (7, 11), (11, 12)]
    assert core._block_bounds(np.zeros(5, np.int64), 2) == [(0, 5)]


def reference_frame(model: dict[tuple[int, int], tuple]) -> pd.DataFrame:
    """Return what read_ticks must give for ``model``: {(ts ns, seq): (price, … oi)}."""
    keys = sorted(model)
    rows = [(pd.Timestamp(ts, tz="UTC"), seq, *model[ts, seq]) for ts, seq in keys]
    return frame(rows)


def random_write(rng: np.random.Generator, model: dict, base_ns: int) -> pd.DataFrame:
    """Return a random write (append, overlap or backfill) and apply it to ``model``."""
    stamps = sorted({ts for ts, _ in model}) or [base_ns]
    kind = rng.choice(["append", "overlap", "backfill"])
    step = 1_000_000  # 1 ms grid: writes often hit stored timestamps
    n = int(rng.integers(1, 30))
    if kind == "append":
        start = stamps[-1] + step * int(rng.integers(1, 4))
    elif kind == "backfill":
        start = stamps[0] - step * (n + int(rng.integers(1, 4)))
    else:
        start = stamps[int(rng.integers(0, len(stamps)))] - step * int(rng.integers(0, 10))
    ts = np.sort(start + step * rng.integers(0, n, n))
    given = {"price": np.round(rng.normal(770, 5, n), 2)}
    if rng.random() < 0.7:
        given["qty"] = ints(rng.integers(1, 1000, n), rng.random(n) < 0.2)
    if rng.random() < 0.7:
        given["bid"] = np.where(rng.random(n) > 0.2, given["price"] - 0.05, np.nan)
    if rng.random() < 0.5:
        given["oi"] = pd.array(2**60 + rng.integers(0, 10**6, n), "Int64")
    frame_ = pd.DataFrame(given, index=pd.DatetimeIndex(ts, tz="UTC").tz_convert(IST))
    seq = frame_.groupby(level=0).cumcount().to_numpy()
    if rng.random() < 0.5:  # explicit, sparse sequence numbers
        seq = seq * 2 + int(rng.integers(0, 2))
        frame_["seq"] = seq
    for i in range(n):
        values = []
        for col in COLUMNS[1:]:
            value = given[col][i] if col in given else None
            if value is NA or (isinstance(value, float) and math.isnan(value) and col != "price"):
                value = None
            values.append(
                None if value is None else (float(value) if col in FLOATS else int(value))
            )
        model[int(ts[i]), int(seq[i])] = tuple(values)
    return frame_


@pytest.mark.parametrize("seed", [1, 2])
def test_random_writes_match_a_dictionary_model(
    store: Store, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(core, "TICK_BLOCK_ROWS", 8)
    rng = np.random.default_rng(seed)
    model: dict[tuple[int, int], tuple] = {}
    base = pd.Timestamp("2024-04-01 09:15", tz=IST).value
    for _ in range(40):
        store.write_ticks("NSE:X", random_write(rng, model, base))
        pd.testing.assert_frame_equal(store.read_ticks("NSE:X"), reference_frame(model))
    expected = reference_frame(model)
    for _ in range(10):
        lo, hi = expected.index[np.sort(rng.integers(0, len(expected), 2))]
        window = expected[(expected.index >= lo) & (expected.index <= hi)]
        pd.testing.assert_frame_equal(store.read_ticks("NSE:X", lo, hi), window)
    with store.connect() as conn:
        stored = blocks(conn, "NSE:X")
    counts = [n for _, _, n in stored]
    assert sum(counts) == len(model)
    assert all(a[1] < b[0] for a, b in zip(stored, stored[1:], strict=False))
    longest_run = expected.index.value_counts().max()
    assert max(counts) <= 8 + longest_run - 1
    edges = np.cumsum([0, *counts])
    for (first, last, _), lo, hi in zip(stored, edges[:-1], edges[1:], strict=True):
        assert (first, last) == (expected.index[lo], expected.index[hi - 1])


def test_small_appends_leave_few_blocks(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "TICK_BLOCK_ROWS", 64)
    index = pd.date_range("2024-04-01 09:15", periods=200, freq="1s", tz=IST, name="ts")
    prices = 100 + np.arange(200) * 0.05
    for i in range(200):  # a live session writing one tick at a time
        store.write_ticks("NSE:X", pd.DataFrame({"price": prices[i : i + 1]}, index[i : i + 1]))
    got = store.read_ticks("NSE:X")
    assert got["price"].tolist() == prices.tolist() and got.index.equals(index)
    with store.connect() as conn:
        counts = [n for _, _, n in blocks(conn, "NSE:X")]
    # Three full blocks and the binary digits of the remaining 8 (one block of 8); one block
    # per write would be 200.
    assert counts == [64, 64, 64, 8]


def test_writers_of_one_instrument_take_turns(store: Store) -> None:
    def ticks(seconds: range, price: float) -> pd.DataFrame:
        index = pd.DatetimeIndex([f"2024-04-01 09:15:{s:02d}" for s in seconds], tz=IST)
        return pd.DataFrame({"price": [price] * len(index)}, index)

    finished = threading.Event()

    def second_writer() -> None:
        store.write_ticks("NSE:X", ticks(range(2, 7), 2.0))
        finished.set()

    with store.connect() as conn:
        store.write_ticks("NSE:X", ticks(range(0, 5), 1.0), conn=conn)  # creates the series
        writer = threading.Thread(target=second_writer)
        writer.start()
        assert not finished.wait(0.5)  # waits for the first transaction
    writer.join(10)
    assert finished.is_set()
    assert store.read_ticks("NSE:X")["price"].tolist() == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    with store.connect() as conn:
        assert sum(n for _, _, n in blocks(conn, "NSE:X")) == 7
