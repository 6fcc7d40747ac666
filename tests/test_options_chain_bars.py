"""Option chains from the instrument master and option bars imported into PostgreSQL.

``../shared/data`` holds no option prices (index, stock and instrument-master data only), so the
option bars here are DERIVED in the test, transparently: each real 5-minute NIFTY bar of
2025-05-19 and 2025-05-20 (``data/bars/NIFTY_5m_2025.csv``) is carried to the 2025-05-29 expiry
at 6.5 % (the future, snapped to its 0.05 tick) and mapped through vollib's Black-76 at a known
smile :func:`smile` for each listed NIFTY 2025-05-29 contract near the money, snapped to the
tick. Those files go through the real import path (``velox.data.import_bars``, and once the
``velox data import`` command) into both PostgreSQL servers. The chain must then carry the
stored closes, imply the smile back, and list exactly the strikes the real Angel One master
CSV lists for that expiry (read here with pandas).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velox.data import import_bars
from velox.errors import DataError, UnknownInstrument, ValidationError
from velox.options import chain, select_strike
from velox.testing import market_file

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from vollib.black import black as vollib_black

ROOT = Path(__file__).resolve().parent.parent
NIFTY_5M = ROOT / "data" / "bars" / "NIFTY_5m_2025.csv"
EXPIRY = date(2025, 5, 29)
EXPIRY_CLOSE = pd.Timestamp("2025-05-29 15:30", tz="Asia/Kolkata")
AS_OF = pd.Timestamp("2025-05-20 11:00", tz="Asia/Kolkata")
RATE = 0.065
TICK = 0.05
YEAR = 365 * 86_400.0
#: Listed 2025-05-29 strikes given bars: ATM at 11:00 on 2025-05-20 (spot 24,930.85) is 24,950.
TRADED = range(24_750, 25_151, 50)
#: Bars only on 2025-05-19: stale on the 20th, so model-priced there.
STALE = ("NFO:NIFTY25MAY25100CE",)
#: No bars at all.
ABSENT = ("NFO:NIFTY25MAY24800PE",)
FUTURE = "NFO:NIFTY25MAYFUT"


def smile(strike: float) -> float:
    """The volatility the derived option bars are priced at: a put skew around 24,900."""
    return 0.15 - 0.4 * math.log(strike / 24_900.0)


def snap(price: float) -> float:
    return max(round(round(price / TICK) * TICK, 2), TICK)


@pytest.fixture(scope="module")
def nifty_5m() -> pd.DataFrame:
    return pd.read_csv(NIFTY_5M, index_col=0, parse_dates=True)


def _derived_session_bars(nifty_5m: pd.DataFrame) -> pd.DataFrame:
    """The real NIFTY 5m bars of 2025-05-19/20 with each bar's years from its END to expiry."""
    bars = nifty_5m[(nifty_5m.index >= "2025-05-19") & (nifty_5m.index < "2025-05-21")].copy()
    ends = bars.index + pd.Timedelta(minutes=5)
    bars["t"] = (EXPIRY_CLOSE - ends).total_seconds() / YEAR
    return bars


def _future_bars(bars: pd.DataFrame) -> pd.DataFrame:
    carry = np.exp(RATE * bars["t"])
    out = pd.DataFrame({c: [snap(p) for p in bars[c] * carry] for c in ("open", "high", "low",
                        "close")}, index=bars.index)  # fmt: skip
    out["volume"] = 0
    return out


def _option_bars(future: pd.DataFrame, t: pd.Series, strike: float, kind: str) -> pd.DataFrame:
    """Black-76 (vollib) of each of the future's O/H/L/C at the smile, snapped to the tick."""
    flag = "c" if kind == "CE" else "p"
    sigma = smile(strike)
    priced = {
        c: [
            snap(vollib_black(flag, f, strike, tt, RATE, sigma))
            for f, tt in zip(future[c], t, strict=True)
        ]
        for c in ("open", "high", "low", "close")
    }
    frame = pd.DataFrame(priced, index=future.index)
    # a put moves against the future: its high comes from the future's low
    both = frame[["open", "high", "low", "close"]]
    frame["high"], frame["low"] = both.max(axis=1), both.min(axis=1)
    frame["volume"] = 1_500
    return frame


def _write(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.copy()
    out.index = out.index.map(lambda ts: ts.isoformat())
    out.rename_axis("timestamp").to_csv(path)
    return path


@pytest.fixture(scope="module")
def derived(nifty_5m, tmp_path_factory) -> dict[str, Path]:
    """{instrument id: derived 5m bar CSV} for the traded contracts, the stale one and FUT."""
    folder = tmp_path_factory.mktemp("option_bars")
    bars = _derived_session_bars(nifty_5m)
    future = _future_bars(bars)
    files = {FUTURE: _write(future, folder / "NIFTY25MAYFUT.csv")}
    for strike in TRADED:
        for kind in ("CE", "PE"):
            instrument_id = f"NFO:NIFTY25MAY{strike}{kind}"
            if instrument_id in ABSENT:
                continue
            frame = _option_bars(future, bars["t"], float(strike), kind)
            if instrument_id in STALE:
                frame = frame[frame.index < "2025-05-20"]
            files[instrument_id] = _write(frame, folder / f"{instrument_id[4:]}.csv")
    return files


def _load(store, derived: dict[str, Path], *, future: bool = True) -> None:
    import_bars(NIFTY_5M, "NSE:NIFTY", "5m", store=store)
    for instrument_id, path in derived.items():
        if future or instrument_id != FUTURE:
            import_bars(path, instrument_id, "5m", store=store)


def _stored_close(store, instrument_id: str, start: str) -> float:
    bar = store.read_bars(instrument_id, "5m", start=start, end=start)
    assert len(bar) == 1
    return float(bar["close"].iloc[0])


def _angel_master() -> pd.DataFrame:
    path = market_file("instruments_angelone_smartapi", "raw", "Saan40_instruments_2025-04.csv")
    raw = pd.read_csv(path, dtype=str)
    return raw[(raw["name"] == "NIFTY") & (raw["expiry"] == "29MAY2025")]


# ---- the import path --------------------------------------------------------------------------


@pytest.mark.postgres
def test_importing_option_bars_makes_the_contract_known(store, derived):
    path = derived["NFO:NIFTY25MAY24900CE"]
    result = import_bars(path, "NFO:NIFTY25MAY24900CE", "5m", store=store)
    assert result.rows == 150 and not result.skipped  # 2 sessions × 75 five-minute bars
    # the bars as written in the file
    stored = store.read_bars("NFO:NIFTY25MAY24900CE", "5m")
    file = pd.read_csv(path, index_col=0, parse_dates=True)
    np.testing.assert_array_equal(stored["close"].to_numpy(), file["close"].to_numpy())
    # the contract's row, as the real Angel One master lists it (strike and tick in paise)
    angel = _angel_master().set_index("symbol").loc["NIFTY29MAY2524900CE"]
    row = store.read_instruments().set_index("id").loc["NFO:NIFTY25MAY24900CE"]
    assert row["kind"] == "CE" and row["underlying"] == "NIFTY"
    assert row["expiry"] == date(2025, 5, 29)
    assert row["strike"] == float(angel["strike"]) / 100 == 24_900.0
    assert row["tick_size"] == float(angel["tick_size"]) / 100 == 0.05
    assert row["lot_size"] == int(angel["lotsize"]) == 75
    assert row["angel_token"] == angel["token"]


@pytest.mark.postgres
def test_unknown_or_expired_contract_is_refused(store, derived, tmp_path):
    path = derived["NFO:NIFTY25MAY24900CE"]
    with pytest.raises(UnknownInstrument, match=r"NFO:NIFTY25MAY24910CE.*did you mean") as caught:
        import_bars(path, "NFO:NIFTY25MAY24910CE", "5m", store=store)  # no 24,910 strike
    assert "\n" not in str(caught.value) and "instrument master" in str(caught.value)
    # NIFTY's April 2025 contract expired on 2025-04-24: May bars cannot be its
    with pytest.raises(DataError, match=r"after NFO:NIFTY25APR24900CE expired on 2025-04-24"):
        import_bars(path, "NFO:NIFTY25APR24900CE", "5m", store=store)
    assert store.bar_summary().empty
    assert store.read_instruments().empty
    # prices off the tick grid are imported, with a warning
    off = pd.read_csv(path, index_col=0)
    off.iloc[0, :4] = off.iloc[0, :4] + 0.01
    off.to_csv(tmp_path / "off.csv")
    result = import_bars(tmp_path / "off.csv", "NFO:NIFTY25MAY24900CE", "5m", store=store)
    assert any("1 bar(s) have prices off" in w and "0.05" in w for w in result.warnings)


@pytest.mark.postgres
def test_a_master_in_the_store_lists_what_the_bundled_one_lacks(store, tmp_path):
    """A broker's full master in the store (here the real Kite April-2024 F&O dump) makes a
    contract importable that the bundled sample lacks. The two daily bars are hand-written:
    this checks the master lookup, not prices."""
    from velox.instruments import read_kite_csv

    dump = market_file(
        "instruments_zerodha_kite", "raw", "nikhil-chhabra_instruments_2024-04.csv.gz"
    )
    weekly = "NFO:NIFTY2441022500CE"  # the 2024-04-10 weekly, not in data/instruments
    path = tmp_path / "weekly.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-04-08,140,152.5,120.05,131.1,9\n"
                    "2024-04-09,131,139.95,88.3,96.45,7\n")  # fmt: skip
    with pytest.raises(UnknownInstrument, match=weekly):
        import_bars(path, weekly, "1d", store=store)
    table = read_kite_csv(dump, as_of=date(2024, 4, 8))
    store.write_instruments(table[table["id"] == weekly])
    assert import_bars(path, weekly, "1d", store=store).rows == 2
    assert store.read_bars(weekly, "1d")["close"].tolist() == [131.1, 96.45]
    row = store.read_instruments().set_index("id").loc[weekly]
    assert (row["strike"], row["lot_size"], row["expiry"]) == (22_500.0, 50, date(2024, 4, 10))
    late = tmp_path / "late.csv"
    late.write_text("timestamp,open,high,low,close,volume\n2024-04-11,1,1,1,1,0\n")
    with pytest.raises(DataError, match="expired on 2024-04-10"):
        import_bars(late, weekly, "1d", store=store)


@pytest.mark.postgres
def test_velox_data_import_takes_an_nfo_option(store, derived, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VELOX_")}
    env |= {"VELOX_DATA_DIR": str(tmp_path / "data"), "VELOX_DATABASE_URL": store.url,
            "PYTHONPATH": str(ROOT)}  # fmt: skip
    path = derived["NFO:NIFTY25MAY24900PE"]
    out = subprocess.run(
        [sys.executable, "-m", "velox.cli", "data", "import", str(path),
         "--symbol", "NFO:NIFTY25MAY24900PE", "--timeframe", "5m"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "stored 150 5m bars of NFO:NIFTY25MAY24900PE" in out.stdout
    assert store.read_instruments()["id"].tolist() == ["NFO:NIFTY25MAY24900PE"]
    refused = subprocess.run(
        [sys.executable, "-m", "velox.cli", "data", "import", str(path),
         "--symbol", "NFO:NIFTY25MAY24910PE", "--timeframe", "5m"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "NFO:NIFTY25MAY24910PE" in refused.stderr


# ---- chains -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_chain_prices_rows_from_stored_bars(store, derived):
    _load(store, derived)
    c = chain("NIFTY", AS_OF, expiry=EXPIRY, timeframe="5m", store=store, strikes=6, sigma=0.17)
    spot = 24_930.85  # close of the real 10:55 bar (ends 11:00) in data/bars/NIFTY_5m_2025.csv
    assert (c["spot"] == spot).all()
    # the forward is the stored future's close of that bar
    assert (c["forward"] == _stored_close(store, FUTURE, "2025-05-20 10:55+05:30")).all()
    t = (EXPIRY_CLOSE - AS_OF).total_seconds() / YEAR
    assert np.allclose(c["t"], t, rtol=0, atol=1e-15)
    # 13 listed strikes around the ATM 24,950 (50 apart here), CE and PE each
    assert sorted(set(c["strike"])) == [24_950.0 + 50 * k for k in range(-6, 7)]
    assert set(c.loc[c["strike"] == 24_950.0, "moneyness"]) == {"ATM"}
    assert (c["lot_size"] == 75).all()
    assert (c["instrument_id"] == "NFO:NIFTY25MAY" + c["strike"].astype(int).astype(str)
            + c["kind"]).all()  # fmt: skip

    derived_fresh = set(derived) - {FUTURE, *STALE}
    bars_rows = c[c["instrument_id"].isin(derived_fresh)]
    model_rows = c[~c["instrument_id"].isin(derived_fresh)]
    assert (len(c), len(bars_rows)) == (26, 16)
    assert bars_rows["price_source"].eq("bars").all()
    assert model_rows["price_source"].eq("model").all()
    assert set(model_rows["instrument_id"]) >= set(STALE) | set(ABSENT)
    # bar rows: the stored close of the last bar that had ended by 11:00, and its start
    for row in bars_rows.itertuples():
        assert row.price == _stored_close(store, row.instrument_id, "2025-05-20 10:55+05:30")
        assert row.price_at == pd.Timestamp("2025-05-20 10:55", tz="Asia/Kolkata")
        assert "close of the 5m bar starting 2025-05-20 10:55 IST" in row.price_note
        # IV round trip: vollib's Black-76 at the implied σ gives the stored close back
        flag = "c" if row.kind == "CE" else "p"
        again = vollib_black(flag, row.forward, row.strike, row.t, RATE, row.sigma)
        assert abs(again - row.price) < TICK / 100
        # and the σ implied is the smile the bars were derived at, up to the tick rounding
        assert row.sigma == pytest.approx(smile(row.strike), abs=2e-3)
    # model rows: vollib's Black-76 at the given σ on the same forward
    assert model_rows["price_at"].isna().all()
    for row in model_rows.itertuples():
        flag = "c" if row.kind == "CE" else "p"
        assert row.price == pytest.approx(
            vollib_black(flag, row.forward, row.strike, row.t, RATE, 0.17), rel=1e-9
        )
        assert "not a traded price" in row.price_note and row.sigma == 0.17
    assert c.attrs["price_source"] == "mixed" and c.attrs["model_priced"] is True
    assert (c.attrs["rows_from_bars"], c.attrs["rows_model"]) == (16, 10)
    assert "16 of 26 rows priced from stored 5m option bars" in c.attrs["note"]


@pytest.mark.postgres
def test_sources_bars_and_model_and_strike_selection(store, derived):
    _load(store, derived, future=False)
    kw = {"expiry": EXPIRY, "timeframe": "5m", "store": store, "strikes": 6}
    traded = chain("NIFTY", AS_OF, source="bars", **kw)
    assert traded["price_source"].eq("bars").all() and traded.attrs["price_source"] == "bars"
    assert traded.attrs["model_priced"] is False and len(traded) == 16
    # no future stored: the forward is spot carried at the rate
    t = (EXPIRY_CLOSE - AS_OF).total_seconds() / YEAR
    assert np.allclose(traded["forward"], 24_930.85 * math.exp(RATE * t), rtol=1e-13)
    # strike selection works on traded rows: offsets over the listed strikes, delta, premium
    assert select_strike(traded, "CE", offset=0)["strike"] == 24_950.0
    assert select_strike(traded, "CE", offset=2)["strike"] == 25_050.0
    with pytest.raises(ValidationError, match="no PE row at offset 3"):
        select_strike(traded, "PE", offset=3)  # 24,800 PE has no bars: not in a bars chain
    pe = select_strike(traded, "PE", offset=2)
    assert pe["strike"] == 24_850.0 and pe["price_source"] == "bars"
    puts = traded[traded["kind"] == "PE"]
    by_delta = select_strike(traded, "PE", delta=0.3)
    assert abs(abs(by_delta["delta"]) - 0.3) == (puts["delta"].abs() - 0.3).abs().min()
    by_premium = select_strike(traded, "CE", premium=100.0)
    calls = traded[traded["kind"] == "CE"]
    assert abs(by_premium["price"] - 100.0) == (calls["price"] - 100.0).abs().min()
    assert by_premium["price"] == _stored_close(
        store, by_premium["instrument_id"], "2025-05-20 10:55+05:30"
    )
    # source="model": the same listed strikes, every row model-priced
    model = chain("NIFTY", AS_OF, source="model", sigma=0.17, **kw)
    assert model["price_source"].eq("model").all() and model.attrs["price_source"] == "model"
    assert (
        model["instrument_id"].tolist()
        == chain("NIFTY", AS_OF, source="auto", sigma=0.17, **kw)["instrument_id"].tolist()
    )
    # no peeking: at 10:57 the 10:55 bar is still forming, so the 10:50 bar's close is used
    early = chain("NIFTY", AS_OF - pd.Timedelta(minutes=3), source="bars", **kw)
    row = early[early["instrument_id"] == "NFO:NIFTY25MAY24900CE"].iloc[0]
    assert row["price"] == _stored_close(store, "NFO:NIFTY25MAY24900CE", "2025-05-20 10:50+05:30")
    assert row["spot"] == 24_927.95  # the real 10:50 bar's close


@pytest.mark.postgres
def test_source_bars_errors_name_the_fix(store, derived):
    import_bars(NIFTY_5M, "NSE:NIFTY", "5m", store=store)
    with pytest.raises(DataError, match=r"velox data import FILE --symbol NFO:NIFTY25MAY"):
        chain("NIFTY", AS_OF, expiry=EXPIRY, timeframe="5m", store=store, source="bars")
    # the bundled master lists no 2025-05-22 weekly
    with pytest.raises(DataError, match="lists no NIFTY options expiring 2025-05-22"):
        chain("NIFTY", AS_OF, expiry="2025-05-22", timeframe="5m", store=store, source="bars")


def test_listed_strikes_equal_the_master_csv(nifty_5m):
    c = chain("NIFTY", AS_OF, expiry=EXPIRY, bars=nifty_5m, timeframe="5m", sigma=0.15,
              strikes=None)  # fmt: skip
    angel = _angel_master()
    listed = angel[angel["instrumenttype"] == "OPTIDX"]
    expected = sorted(
        zip(listed["strike"].astype(float) / 100, listed["symbol"].str[-2:], strict=True)
    )
    assert sorted(zip(c["strike"], c["kind"], strict=True)) == expected
    assert len(c) == 204  # the master's 204 NIFTY 2025-05-29 options
    assert c["price_source"].eq("model").all()  # bars given, no store: model prices
    atm = c.loc[c["offset"] == 0, "strike"]
    assert set(atm) == {24_950.0}
    assert c.loc[c["offset"] == 1, "strike"].iloc[0] == 25_000.0


def test_bad_source_or_strikes_is_a_clear_error(nifty_5m):
    kw = {"bars": nifty_5m, "timeframe": "5m", "sigma": 0.15}
    with pytest.raises(ValidationError, match="source='traded' must be 'auto', 'bars' or 'model'"):
        chain("NIFTY", AS_OF, expiry=EXPIRY, source="traded", **kw)
    with pytest.raises(DataError, match="strikes=None needs listed contracts"):
        chain("NIFTY", AS_OF, expiry="2025-05-22", strikes=None, **kw)
