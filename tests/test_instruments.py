"""Tests for velox.instruments against the real Kite and Angel samples and hand-built rows."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

import velox.instruments as vi
from velox.errors import DataError, UnknownInstrument, ValidationError
from velox.testing import market_file, shared_market_data
from velox.types import InstrumentKind

MARKET = shared_market_data()
KITE_RAW = MARKET / "instruments_zerodha_kite" / "raw" / "nikhil-chhabra_instruments_2024-04.csv.gz"
ANGEL_TOKENS = (
    MARKET
    / "instruments_angelone_smartapi"
    / "raw"
    / "Surya86899_OpenAPIScripMaster_token_symbol_name.csv"
)
KITE_HEADER = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,"
    "lot_size,instrument_type,segment,exchange"
)


def _need(path: Path) -> Path:
    return market_file(str(path.relative_to(MARKET)))


def _angel_row(**fields: str) -> dict[str, str]:
    row = {
        "token": "1",
        "symbol": "X-EQ",
        "name": "X",
        "expiry": "",
        "strike": "-1.000000",
        "lotsize": "1",
        "instrumenttype": "",
        "exch_seg": "NSE",
        "tick_size": "5.000000",
    }
    row.update(fields)
    return row


def _write_angel(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def kite() -> pd.DataFrame:
    return vi.read_kite_csv(vi.KITE_SAMPLE, as_of=date(2026, 5, 4))


@pytest.fixture(scope="module")
def angel() -> pd.DataFrame:
    return vi.read_angel_json(vi.ANGEL_SAMPLE, as_of=date(2026, 5, 4))


@pytest.fixture(scope="module")
def master() -> vi.InstrumentMaster:
    return vi.load_bundled_master(as_of=date(2026, 5, 4))


# ---- loading the real samples --------------------------------------------------------------------


def test_both_brokers_produce_the_master_columns(kite: pd.DataFrame, angel: pd.DataFrame) -> None:
    # That these are the store table's columns is checked against the live schema in
    # tests/store/test_store.py::test_instruments_table_has_the_master_columns.
    assert tuple(kite.columns) == tuple(angel.columns) == vi.COLUMNS


def test_kite_sample_counts_per_kind(kite: pd.DataFrame) -> None:
    # Counts stated in the sample's PROVENANCE.md: Counter({'CE': 829, 'PE': 820, 'FUT': 558,
    # 'EQ': 363}), 182 NSE + 181 BSE equities.
    assert kite["kind"].value_counts().to_dict() == {"CE": 829, "PE": 820, "FUT": 558, "EQ": 363}
    assert kite.groupby("exchange").size().to_dict() == {"NSE": 182, "BSE": 181, "NFO": 2207}
    assert kite["id"].is_unique


def test_kite_known_option_contract(kite: pd.DataFrame) -> None:
    # line 1510 of the file: 17437186,68114,NIFTY24APR22500CE,NIFTY,0,25-04-2024,22500,0.05,50,...
    row = kite.set_index("id").loc["NFO:NIFTY24APR22500CE"]
    assert (row["kind"], row["underlying"], row["segment"]) == ("CE", "NIFTY", "NFO-OPT")
    assert row["expiry"] == pd.Timestamp("2024-04-25")
    assert (row["strike"], row["tick_size"], row["lot_size"]) == (22500.0, 0.05, 50)
    assert (row["kite_token"], row["exchange_token"]) == (17437186, 68114)
    assert pd.isna(row["angel_token"])


def test_angel_sample_counts_and_index_aliases(angel: pd.DataFrame) -> None:
    # PROVENANCE: 4,586 OPTIDX, 15 FUTIDX, 55 AMXIDX, 21 NSE + 11 BSE blank-type rows, 4 CDS.
    # Four of the blank-type NSE rows are index aliases (NIFTY 26000, BANKNIFTY 26009, FINNIFTY
    # 26037, MIDCPNIFTY 26074 with tick 0) and the CDS rows are another segment: both skipped.
    counts = angel["kind"].value_counts().to_dict()
    assert counts["CE"] + counts["PE"] == 4586
    assert (counts["FUT"], counts["INDEX"], counts["EQ"]) == (15, 55, 32 - 4)
    assert angel["id"].is_unique
    assert not angel["angel_token"].isin(["26000", "26009", "26037", "26074"]).any()


def test_angel_option_strike_and_tick_are_divided_by_100(angel: pd.DataFrame) -> None:
    # raw: 37749,NIFTY26JUN2523000CE,NIFTY,26JUN2025,2300000.000000,75,OPTIDX,NFO,5.000000
    row = angel.set_index("angel_symbol").loc["NIFTY26JUN2523000CE"]
    assert row["id"] == "NFO:NIFTY25JUN23000CE"
    assert (row["strike"], row["tick_size"], row["lot_size"]) == (23000.0, 0.05, 75)
    assert (row["angel_token"], row["exchange_token"]) == ("37749", 37749)
    assert row["expiry"] == pd.Timestamp("2025-06-26")
    assert pd.isna(row["kite_token"])


def test_angel_equities_drop_the_eq_suffix_and_etf_tick_is_one_paisa(angel: pd.DataFrame) -> None:
    row = angel.set_index("angel_symbol").loc["NIFTYBEES-EQ"]
    assert (row["id"], row["tick_size"], row["kind"]) == ("NSE:NIFTYBEES", 0.01, "EQ")
    assert angel.set_index("angel_symbol").loc["NIFTYBEES"]["id"] == "BSE:NIFTYBEES"


def test_angel_indices_get_underlying_ids(angel: pd.DataFrame) -> None:
    by_token = angel.set_index("angel_token")
    assert by_token.loc["99926000", "id"] == "NSE:NIFTY"
    assert by_token.loc["99926009", "id"] == "NSE:BANKNIFTY"
    assert by_token.loc["99926000", "segment"] == "INDICES"
    assert pd.isna(by_token.loc["99926000", "exchange_token"])


def test_both_expiry_formats_parse_to_the_same_date(tmp_path: Path) -> None:
    line = "17437186,68114,NIFTY24APR22500CE,NIFTY,0,{},22500,0.05,50,CE,NFO-OPT,NFO\n"
    official = tmp_path / "official.csv"
    official.write_text(KITE_HEADER + "\n" + line.format("2024-04-25"))
    resaved = tmp_path / "resaved.csv"
    resaved.write_text(KITE_HEADER + "\n" + line.format("25-04-2024"))
    a, b = vi.read_kite_csv(official), vi.read_kite_csv(resaved)
    assert a["expiry"].iloc[0] == b["expiry"].iloc[0] == pd.Timestamp("2024-04-25")
    assert a.drop(columns="freeze_qty").equals(b.drop(columns="freeze_qty"))


def test_official_mock_options_get_their_underlying_from_the_symbol() -> None:
    # The official mock leaves `name` blank on NFO rows and writes expiry as YYYY-MM-DD.
    mock = vi.read_kite_csv(vi.KITE_MOCK).set_index("id")
    row = mock.loc["NFO:BANKNIFTY18JAN23500CE"]
    assert (row["underlying"], row["expiry"]) == ("BANKNIFTY", pd.Timestamp("2018-01-25"))
    assert (row["strike"], row["lot_size"]) == (23500.0, 40)
    assert mock.loc["NFO:ADANIPORTS17DEC490PE", "underlying"] == "ADANIPORTS"
    assert mock.loc["NSE:CENTRALBK-BE", "kind"] == "EQ"


# ---- the symbol rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "monthly", "expected"),
    [
        (("NIFTY", "CE", date(2024, 4, 25), 22500.0), None, "NIFTY24APR22500CE"),
        (("NIFTY", "PE", date(2024, 4, 11), 22500.0), None, "NIFTY2441122500PE"),
        (("NIFTY", "CE", date(2024, 4, 10), 22000.0), False, "NIFTY2441022000CE"),
        (("NIFTY", "CE", date(2024, 10, 3), 25000.0), False, "NIFTY24O0325000CE"),
        (("NIFTY", "PE", date(2024, 11, 7), 24000.0), False, "NIFTY24N0724000PE"),
        (("BANKNIFTY", "CE", date(2024, 12, 4), 52000.0), False, "BANKNIFTY24D0452000CE"),
        (("ABCAPITAL", "CE", date(2024, 4, 25), 162.5), None, "ABCAPITAL24APR162.5CE"),
        (("NIFTY", "FUT", date(2025, 4, 24), None), None, "NIFTY25APRFUT"),
        (("M&M", "FUT", date(2024, 5, 30), None), None, "M&M24MAYFUT"),
        (("SBIN", "EQ", None, None), None, "SBIN"),
    ],
)
def test_kite_symbol_by_hand(args: tuple, monthly: bool | None, expected: str) -> None:
    assert vi.kite_symbol(*args, monthly=monthly) == expected


def test_kite_symbol_reproduces_every_derivative_of_the_bundled_kite_sample(
    kite: pd.DataFrame,
) -> None:
    _assert_symbol_rule(kite)


def test_kite_symbol_reproduces_all_31k_rows_of_the_real_kite_dump() -> None:
    _assert_symbol_rule(vi.read_kite_csv(_need(KITE_RAW)))


def _assert_symbol_rule(table: pd.DataFrame) -> None:
    monthly = vi.monthly_expiries(table)
    derivatives = table[table["kind"].isin(["FUT", "CE", "PE"])]
    assert len(derivatives) > 1000
    wrong = [
        (row.symbol, derived)
        for row in derivatives.itertuples()
        if (
            derived := vi.kite_symbol(
                row.underlying,
                row.kind,
                row.expiry.date(),
                None if pd.isna(row.strike) else row.strike,
                monthly=row.expiry.date() in monthly[row.underlying],
            )
        )
        != row.symbol
    ]
    assert wrong == []


def test_angel_weekly_moved_by_a_holiday_is_named_weekly(angel: pd.DataFrame) -> None:
    # NIFTY's 1-May-2025 weekly expiry moved to Wed 30 April (Maharashtra Day); the April
    # monthly is Thu 24 April, the day the April future expires. looks_monthly alone would
    # wrongly call 30 April monthly, the futures tell the truth.
    nifty = angel[(angel["underlying"] == "NIFTY") & angel["kind"].isin(["CE", "PE"])]
    april_30 = nifty[nifty["expiry"] == pd.Timestamp("2025-04-30")]["id"]
    april_24 = nifty[nifty["expiry"] == pd.Timestamp("2025-04-24")]["id"]
    assert len(april_30) > 10 and april_30.str.match(r"^NFO:NIFTY25430\d+(CE|PE)$").all()
    assert len(april_24) > 10 and april_24.str.match(r"^NFO:NIFTY25APR\d+(CE|PE)$").all()
    assert vi.looks_monthly(date(2025, 4, 30))  # the fallback's known blind spot


def test_angel_rows_built_by_hand_map_to_kite_ids(tmp_path: Path) -> None:
    rows = [
        _angel_row(
            token="54452",
            symbol="NIFTY24APR25FUT",
            name="NIFTY",
            expiry="24APR2025",
            lotsize="75",
            instrumenttype="FUTIDX",
            exch_seg="NFO",
        ),
        _angel_row(
            token="1001",
            symbol="NIFTY24APR2522500CE",
            name="NIFTY",
            expiry="24APR2025",
            strike="2250000.000000",
            lotsize="75",
            instrumenttype="OPTIDX",
            exch_seg="NFO",
        ),
        _angel_row(
            token="1002",
            symbol="NIFTY09APR2522500PE",
            name="NIFTY",
            expiry="09APR2025",
            strike="2250000.000000",
            lotsize="75",
            instrumenttype="OPTIDX",
            exch_seg="NFO",
        ),
        _angel_row(
            token="1003",
            symbol="ABCAPITAL24APR25162.5CE",
            name="ABCAPITAL",
            expiry="24APR2025",
            strike="16250.000000",
            lotsize="5400",
            instrumenttype="OPTSTK",
            exch_seg="NFO",
        ),
        _angel_row(token="3045", symbol="SBIN-EQ", name="SBIN"),
        _angel_row(token="14898", symbol="CENTRALBK-BE", name="CENTRALBK"),
    ]
    table = vi.read_angel_json(_write_angel(tmp_path / "a.json", rows)).set_index("angel_token")
    assert table["id"].to_dict() == {
        "54452": "NFO:NIFTY25APRFUT",
        "1001": "NFO:NIFTY25APR22500CE",
        "1002": "NFO:NIFTY2540922500PE",
        "1003": "NFO:ABCAPITAL25APR162.5CE",
        "3045": "NSE:SBIN",
        "14898": "NSE:CENTRALBK-BE",
    }
    assert table.loc["1003", "strike"] == 162.5


# ---- cross-broker mapping ------------------------------------------------------------------------


def test_long_dated_options_listed_by_both_brokers_share_id_and_exchange_token(
    angel: pd.DataFrame,
) -> None:
    # The Kite dump (Apr 2024) and the Angel sample (Apr 2025) overlap only in long-dated NIFTY
    # options. The exchange token is the exchange's, so equal tokens confirm the derived id.
    kite_raw = vi.read_kite_csv(_need(KITE_RAW))
    common = kite_raw.merge(angel, on="id", suffixes=("_kite", "_angel"))
    assert len(common) >= 20
    assert common["id"].str.startswith("NFO:NIFTY").all()
    assert (common["exchange_token_kite"] == common["exchange_token_angel"]).all()
    assert (common["exchange_token_kite"].astype(str) == common["angel_token_angel"]).all()


def test_merge_of_overlapping_equities_keeps_both_tokens(tmp_path: Path) -> None:
    # Angel equity tokens from the real OpenAPIScripMaster token list (token,symbol,name).
    with _need(ANGEL_TOKENS).open() as handle:
        listed = {r["symbol"]: r for r in csv.DictReader(handle)}
    rows = [
        _angel_row(token=listed[s]["token"], symbol=s, name=listed[s]["name"])
        for s in ("SBIN-EQ", "RELIANCE-EQ", "INFY-EQ")
    ]
    kite = vi.InstrumentMaster.from_kite_csv(vi.KITE_SAMPLE)
    angel = vi.InstrumentMaster.from_angel_json(_write_angel(tmp_path / "eq.json", rows))
    merged = kite.merge(angel)
    assert len(merged) == len(kite)  # same contracts: no new rows
    sbin = merged.row("NSE:SBIN")
    # Kite sample: 779521,3045,SBIN,...,NSE ; Angel: 3045,SBIN-EQ,SBIN
    assert (sbin["kite_token"], sbin["angel_token"], sbin["exchange_token"]) == (
        779521,
        "3045",
        3045,
    )
    assert sbin["angel_symbol"] == "SBIN-EQ"
    reliance = merged.row("NSE:RELIANCE")
    assert (reliance["kite_token"], reliance["angel_token"]) == (738561, "2885")
    assert (
        merged.by_angel_token("2885") == merged.by_kite_token(738561) == merged.get("NSE:RELIANCE")
    )
    assert pd.isna(merged.row("BSE:SBIN")["angel_token"])  # BSE row untouched


def test_merge_keeps_the_first_masters_values_and_logs_differences(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kite_row = "9663746,37749,NIFTY25JUN23000CE,NIFTY,0,26-06-2025,23000,0.05,50,CE,NFO-OPT,NFO\n"
    kite = vi.InstrumentMaster.from_kite_csv(
        _write(tmp_path / "k.csv", KITE_HEADER + "\n" + kite_row)
    )
    rows = [
        _angel_row(
            token="37749",
            symbol="NIFTY26JUN2523000CE",
            name="NIFTY",
            expiry="26JUN2025",
            strike="2300000.000000",
            lotsize="75",
            instrumenttype="OPTIDX",
            exch_seg="NFO",
        )
    ]
    angel = vi.InstrumentMaster.from_angel_json(_write_angel(tmp_path / "a.json", rows))
    with caplog.at_level("WARNING", logger="velox.instruments"):
        merged = kite.merge(angel)
    assert len(merged) == 1 and "lot_size" in caplog.text
    row = merged.row("NFO:NIFTY25JUN23000CE")
    assert (row["lot_size"], row["kite_token"], row["angel_token"]) == (50, 9663746, "37749")
    assert angel.merge(kite).row("NFO:NIFTY25JUN23000CE")["lot_size"] == 75


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- the bundled master and lookups ------------------------------------------------------------


def test_bundled_master_has_the_indices_the_bar_data_uses(master: vi.InstrumentMaster) -> None:
    for instrument_id in ("NSE:NIFTY", "NSE:BANKNIFTY", "NSE:INDIAVIX", "NSE:RELIANCE", "NSE:SBIN"):
        assert instrument_id in master
    nifty = master.get("NSE:NIFTY")
    assert nifty.kind is InstrumentKind.INDEX and nifty.lot_size == 1
    assert master.by_kite_token(256265).id == "NSE:NIFTY"  # token stated in the Kite PROVENANCE
    assert master.by_kite_token(260105).id == "NSE:BANKNIFTY"
    assert master.by_angel_token("99926009").id == "NSE:BANKNIFTY"
    assert master.by_angel_token(99926000).id == "NSE:NIFTY"
    assert master.table["id"].is_unique


def test_every_bundled_row_is_a_valid_instrument(master: vi.InstrumentMaster) -> None:
    instruments = [master.get(i) for i in master.table["id"]]
    assert len(instruments) == len(master) > 7000
    kinds = {i.kind for i in instruments}
    assert kinds == set(InstrumentKind)


def test_token_lookups_both_ways(master: vi.InstrumentMaster) -> None:
    assert master.by_kite_token(779521).id == "NSE:SBIN"  # Kite sample line: 779521,3045,SBIN
    assert master.by_kite_token("17437186").id == "NFO:NIFTY24APR22500CE"
    option = master.by_angel_token("37749")
    assert (option.id, option.strike, option.lot_size) == ("NFO:NIFTY25JUN23000CE", 23000.0, 75)
    with pytest.raises(UnknownInstrument, match="Kite instrument_token 1"):
        master.by_kite_token(1)
    with pytest.raises(UnknownInstrument, match="symboltoken 424242"):
        master.by_angel_token("424242")


def test_unknown_id_suggests_close_matches(master: vi.InstrumentMaster) -> None:
    with pytest.raises(UnknownInstrument, match="did you mean NSE:RELIANCE") as excinfo:
        master.get("NSE:RELIANC")
    assert isinstance(excinfo.value, KeyError)
    # a malformed id is a ValidationError, still with the suggestion
    with pytest.raises(
        ValidationError, match="must read 'EXCHANGE:SYMBOL'.*did you mean NSE:RELIANCE"
    ):
        master.get("RELIANCE")
    with pytest.raises(UnknownInstrument, match="did you mean NFO:NIFTY24APR225"):
        master.get("NFO:NIFTY24APR22525CE")


def test_freeze_quantity_by_date(tmp_path: Path) -> None:
    later = vi.InstrumentMaster.from_kite_csv(vi.KITE_SAMPLE, as_of=date(2026, 5, 4))
    earlier = vi.InstrumentMaster.from_kite_csv(vi.KITE_SAMPLE, as_of=date(2024, 4, 1))
    assert later.get("NFO:NIFTY24APR22500CE").freeze_qty == 1800
    assert later.get("NFO:BANKNIFTY24APRFUT").freeze_qty == 600
    assert later.get("NSE:SBIN").freeze_qty is None  # cash has no freeze quantity
    assert later.get("NFO:SBIN24APRFUT").freeze_qty is None  # not in the dated file
    assert earlier.get("NFO:NIFTY24APR22500CE").freeze_qty is None  # before the file's rows
    dated = _write(
        tmp_path / "f.csv",
        "effective_from,underlying,freeze_qty\n2024-01-01,NIFTY,1800\n2026-04-01,NIFTY,1755\n",
    )
    assert vi.freeze_quantities_on(date(2026, 3, 31), dated) == {"NIFTY": 1800}
    assert vi.freeze_quantities_on(date(2026, 4, 1), dated) == {"NIFTY": 1755}


def test_snap_price_and_qty_through_the_instrument(master: vi.InstrumentMaster) -> None:
    option = master.get("NFO:NIFTY24APR22500CE")  # lot 50, tick 0.05
    assert option.snap_qty(120) == 100
    assert option.snap_price(101.23) == 101.25 and option.snap_price(101.23, "down") == 101.2
    etf = master.get("NSE:NIFTYBEES")  # tick 0.01 from Angel's 1.000000 paise
    assert etf.snap_price(250.237) == 250.24


def test_options_chain_and_expiries(master: vi.InstrumentMaster) -> None:
    chain = master.options("NIFTY", "2024-04-25")
    assert set(chain["kind"]) == {"CE", "PE"}
    assert (chain["expiry"] == pd.Timestamp("2024-04-25")).all()
    assert chain["strike"].is_monotonic_increasing
    expiries = master.expiries("NIFTY")
    assert {date(2024, 4, 4), date(2024, 4, 25), date(2025, 4, 30)} <= set(expiries)
    nearest = master.options("NIFTY")
    assert (nearest["expiry"] == pd.Timestamp(expiries[0])).all()
    with pytest.raises(UnknownInstrument, match="listed expiries"):
        master.options("NIFTY", "2024-04-26")


def test_search(master: vi.InstrumentMaster) -> None:
    assert master.search("sbin", kind="EQ")["id"].tolist() == ["BSE:SBIN", "NSE:SBIN"]
    futures = master.search(underlying="BANKNIFTY", kind="FUT", limit=None)
    assert len(futures) >= 3 and futures["expiry"].is_monotonic_increasing


# ---- bad rows -----------------------------------------------------------------------------------


def test_kite_unknown_instrument_type_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.csv",
        KITE_HEADER + "\n"
        "779521,3045,SBIN,STATE BANK OF INDIA,0,,0,0.05,1,EQ,NSE,NSE\n"
        "1,2,WEIRD,WEIRD,0,,0,0.05,1,XYZ,NSE,NSE\n",
    )
    with pytest.raises(DataError, match=r"bad\.csv: line 3: instrument_type='XYZ'"):
        vi.read_kite_csv(path)


@pytest.mark.parametrize(
    ("tick", "lot", "column"), [("0", "1", "tick_size"), ("0.05", "0", "lot_size")]
)
def test_kite_non_positive_tick_or_lot_names_the_line(
    tmp_path: Path, tick: str, lot: str, column: str
) -> None:
    path = _write(
        tmp_path / "bad.csv",
        KITE_HEADER + f"\n779521,3045,SBIN,STATE BANK OF INDIA,0,,0,{tick},{lot},EQ,NSE,NSE\n",
    )
    with pytest.raises(DataError, match=rf"line 2: {column}=.* must be > 0"):
        vi.read_kite_csv(path)


def test_kite_bad_expiry_names_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.csv",
        KITE_HEADER + "\n1,2,NIFTY24APRFUT,NIFTY,0,2024/04/25,0,0.05,50,FUT,NFO-FUT,NFO\n",
    )
    with pytest.raises(DataError, match=r"line 2: expiry='2024/04/25'"):
        vi.read_kite_csv(path)


def test_angel_bad_rows_name_the_entry(tmp_path: Path) -> None:
    path = _write_angel(
        tmp_path / "bad.json",
        [_angel_row(), _angel_row(token="77", instrumenttype="OPTXYZ", exch_seg="NFO")],
    )
    with pytest.raises(
        DataError, match=r"bad\.json: entry 2 \(token 77\): instrumenttype='OPTXYZ'"
    ):
        vi.read_angel_json(path)
    path = _write_angel(tmp_path / "lot.json", [_angel_row(token="5", lotsize="-1")])
    with pytest.raises(DataError, match=r"entry 1 \(token 5\): lot_size=.* must be > 0"):
        vi.read_angel_json(path)


def test_angel_json_may_be_gzipped(tmp_path: Path) -> None:
    path = tmp_path / "a.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump([_angel_row(token="3045", symbol="SBIN-EQ", name="SBIN")], handle)
    assert vi.read_angel_json(path)["id"].tolist() == ["NSE:SBIN"]


def test_kite_index_rows_get_velox_index_ids(tmp_path: Path) -> None:
    # How a full Kite dump lists indices: segment INDICES, type EQ, tick and lot 0.
    path = _write(
        tmp_path / "idx.csv",
        KITE_HEADER + "\n256265,1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE\n"
        "268041,1047,NIFTY 200,NIFTY 200,0,,0,0,0,EQ,INDICES,NSE\n",
    )
    table = vi.read_kite_csv(path).set_index("kite_token")
    assert table["id"].to_dict() == {256265: "NSE:NIFTY", 268041: "NSE:NIFTY200"}
    assert (table["kind"] == "INDEX").all() and (table["lot_size"] == 1).all()


def test_other_segments_are_skipped_not_errors(tmp_path: Path) -> None:
    text = io.StringIO()
    text.write(KITE_HEADER + "\n")
    text.write("53505799,209007,GOLDM24MAYFUT,GOLDM,0,2024-05-03,0,1.0,1,FUT,MCX-FUT,MCX\n")
    text.write("779521,3045,SBIN,STATE BANK OF INDIA,0,,0,0.05,1,EQ,NSE,NSE\n")
    assert vi.read_kite_csv(_write(tmp_path / "k.csv", text.getvalue()))["id"].tolist() == [
        "NSE:SBIN"
    ]


def test_master_rows_with_ids_outside_the_grammar_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker master row whose id Velox could never address (a control character, lower
    case, an over-long symbol) is dropped and named; the valid rows load (Kite and Angel)."""
    rows = [
        "1793,7,AARTIIND,AARTI INDUSTRIES,0,,0,0.05,1,EQ,NSE,NSE",
        "1794,8,BAD\tSYM,TAB IN SYMBOL,0,,0,0.05,1,EQ,NSE,NSE",
        "1795,9,lower,LOWER CASE,0,,0,0.05,1,EQ,NSE,NSE",
        f"1796,10,{'X' * 60},TOO LONG,0,,0,0.05,1,EQ,NSE,NSE",
    ]
    path = tmp_path / "kite.csv"
    path.write_text(KITE_HEADER + "\n" + "\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="velox.instruments"):
        table = vi.read_kite_csv(path)
    assert table["id"].tolist() == ["NSE:AARTIIND"]
    assert "3 row(s) with an invalid instrument id dropped" in caplog.text

    caplog.clear()
    angel = _write_angel(
        tmp_path / "angel.json",
        [_angel_row(symbol="GOOD-EQ", name="GOOD"), _angel_row(token="2", symbol="BA\nD-EQ")],
    )
    with caplog.at_level("WARNING", logger="velox.instruments"):
        table = vi.read_angel_json(angel)
    assert table["id"].tolist() == ["NSE:GOOD"]
    assert "1 row(s) with an invalid instrument id dropped" in caplog.text


def test_nse_stocks_carry_their_smartapi_tokens_and_a_mismatch_is_refused(tmp_path: Path) -> None:
    from velox.errors import DataError
    from velox.instruments import load_bundled_master, with_angel_cash_tokens

    master = load_bundled_master()
    # Angel's own list (data/instruments/angel_nse_cash_tokens_2024-04.csv): SBIN-EQ is 3045
    assert master.by_angel_token("3045").id == "NSE:SBIN"
    row = master.row("NSE:RELIANCE")
    assert (row["angel_token"], row["angel_symbol"]) == ("2885", "RELIANCE-EQ")
    assert master.row("NSE:NIFTY")["angel_token"] == "99926000"  # the sample's rows stay
    wrong = tmp_path / "tokens.csv"
    wrong.write_text("token,symbol,name\n9999,SBIN-EQ,SBIN\n")
    table = master.table.assign(angel_token=None, angel_symbol=None)
    with pytest.raises(DataError, match="SBIN-EQ is token 9999 but NSE:SBIN's NSE token is 3045"):
        with_angel_cash_tokens(table, wrong)
