"""The instrument master: Kite and SmartAPI instrument dumps as one table with Velox ids.

Every instrument gets one id, ``EXCHANGE:SYMBOL``, whichever broker listed it. The symbol is the
Zerodha Kite ``tradingsymbol`` (``NSE:RELIANCE``, ``NFO:NIFTY24APR22500CE``,
``NFO:NIFTY2441122500CE``); Angel One rows are translated to the same symbol so one contract
maps to one row that carries both brokers' tokens. Indices, which the Kite F&O dump lacks, are
named ``NSE:<F&O underlying>`` (``NSE:NIFTY``, ``NSE:BANKNIFTY``) from the dated
``data/instruments/indices.csv``.

Conventions
-----------
* Prices are rupees: Angel's ``strike`` and ``tick_size`` (stored in paise, ×100) are divided by
  100 on load.
* ``expiry`` is a date (``NaT`` for cash and indices); ``strike`` is NaN except for options.
* ``freeze_qty`` (the largest single F&O order NSE accepts) comes from the dated
  ``data/instruments/freeze_quantities.csv`` as of the date the master is loaded for.
* Kite's symbol rule for derivatives (used to name Angel rows), with ``YY`` the expiry year:
  futures ``<UNDERLYING><YY><MON>FUT``; monthly options ``<UNDERLYING><YY><MON><STRIKE><CE|PE>``;
  weekly options ``<UNDERLYING><YY><M><DD><STRIKE><CE|PE>`` where ``M`` is 1-9 for Jan-Sep and
  O, N, D for Oct-Dec. An expiry is monthly when a future of the same underlying expires that
  day (futures only exist on monthly expiries) or, in a month beyond the futures, when it is the
  month's last listed expiry; see :func:`monthly_expiries` and :func:`kite_symbol`.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
import logging
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from velox.errors import DataError, UnknownInstrument, ValidationError, VeloxError
from velox.types import Instrument, InstrumentKind, check_instrument_id

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

#: Columns of the master table, in the order of the store's ``instruments`` table.
COLUMNS: tuple[str, ...] = (
    "id",
    "exchange",
    "symbol",
    "kind",
    "name",
    "underlying",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "freeze_qty",
    "segment",
    "exchange_token",
    "kite_token",
    "angel_token",
    "angel_symbol",
)

#: Where the bundled instrument files live (shipped with the repository).
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "instruments"
KITE_SAMPLE = DATA_DIR / "kite_instruments_sample_2024-04.csv"
KITE_MOCK = DATA_DIR / "instruments_all.csv"
ANGEL_SAMPLE = DATA_DIR / "angel_scrip_master_sample_2025-04.json.gz"
#: Angel One's NSE cash tokens (``token,symbol,name``; ``SBIN-EQ`` is 3045): the Angel sample
#: above has almost no NSE stocks, so their SmartAPI tokens and symbols come from this list.
ANGEL_NSE_CASH = DATA_DIR / "angel_nse_cash_tokens_2024-04.csv"
INDICES_PATH = DATA_DIR / "indices.csv"
FREEZE_PATH = DATA_DIR / "freeze_quantities.csv"

#: Exchanges Velox trades; rows of other segments (MCX, CDS, …) are skipped with a log line.
EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO"})

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKLY_MONTH_CODES = "123456789OND"
_KITE_KINDS = {"EQ": "EQ", "FUT": "FUT", "CE": "CE", "PE": "PE"}
_ANGEL_FUTURES = {"FUTIDX", "FUTSTK"}
_ANGEL_OPTIONS = {"OPTIDX", "OPTSTK"}
_ANGEL_INDICES = {"AMXIDX", "INDEX"}


# ---- symbol rule --------------------------------------------------------------------------------


def format_strike(strike: float) -> str:
    """Return a strike as Kite writes it in symbols: ``22500``, ``162.5``.

    Examples
    --------
    >>> format_strike(22500.0), format_strike(162.5), format_strike(2.55)
    ('22500', '162.5', '2.55')
    """
    if float(strike).is_integer():
        return str(int(strike))
    return f"{strike:.2f}".rstrip("0").rstrip(".")


def looks_monthly(expiry: date) -> bool:
    """Return True if ``expiry`` falls in the last seven days of its month.

    A fallback for a lone contract: NSE's monthly expiry is the last expiry weekday of the month
    (so a week later is next month), weeklies are earlier. It misjudges an expiry moved across a
    week boundary by a holiday (NIFTY's 1-May-2025 weekly moved to 30 April); whole tables use the
    futures' expiries instead (see :func:`monthly_expiries`).

    Examples
    --------
    >>> looks_monthly(date(2024, 4, 25)), looks_monthly(date(2024, 4, 18))
    (True, False)
    """
    following = date.fromordinal(expiry.toordinal() + 7)
    return following.month != expiry.month


def kite_symbol(
    underlying: str,
    kind: InstrumentKind | str,
    expiry: date | None = None,
    strike: float | None = None,
    *,
    monthly: bool | None = None,
) -> str:
    """Return the Kite trading symbol of a derivative (or the underlying itself for EQ/INDEX).

    ``monthly`` says whether ``expiry`` is the month's (monthly) expiry; ``None`` guesses with
    :func:`looks_monthly`. Futures are always monthly.

    Examples
    --------
    >>> kite_symbol("NIFTY", "CE", date(2024, 4, 25), 22500)
    'NIFTY24APR22500CE'
    >>> kite_symbol("NIFTY", "PE", date(2024, 4, 11), 22500, monthly=False)
    'NIFTY2441122500PE'
    >>> kite_symbol("NIFTY", "CE", date(2024, 10, 3), 25000, monthly=False)
    'NIFTY24O0325000CE'
    >>> kite_symbol("BANKNIFTY", "FUT", date(2025, 6, 26))
    'BANKNIFTY25JUNFUT'
    """
    kind = InstrumentKind(kind)
    if kind in (InstrumentKind.EQ, InstrumentKind.INDEX):
        return underlying
    if expiry is None:
        raise ValidationError(f"{underlying} {kind.value} needs an expiry to form its symbol")
    year = f"{expiry.year % 100:02d}"
    month = _MONTHS[expiry.month - 1]
    if kind is InstrumentKind.FUT:
        return f"{underlying}{year}{month}FUT"
    if strike is None or not strike > 0:
        raise ValidationError(f"{underlying} {kind.value} option needs a strike > 0, got {strike}")
    if monthly is None:
        monthly = looks_monthly(expiry)
    if monthly:
        stem = f"{year}{month}"
    else:
        stem = f"{year}{_WEEKLY_MONTH_CODES[expiry.month - 1]}{expiry.day:02d}"
    return f"{underlying}{stem}{format_strike(strike)}{kind.value}"


def monthly_expiries(table: pd.DataFrame) -> dict[str, set[date]]:
    """Return, per underlying, the expiries in ``table`` that are monthly.

    A future expires only on a monthly expiry, so within the futures' horizon (about three
    months) the futures' expiry days are the monthly ones. Beyond it NSE lists only monthly
    (quarterly, half-yearly) options, so in a month without a future the last listed expiry of
    that underlying is the monthly one.
    """
    derivatives = table[table["kind"].isin(["FUT", "CE", "PE"]) & table["expiry"].notna()]
    out: dict[str, set[date]] = {}
    for underlying, group in derivatives.groupby("underlying", sort=False):
        futures = {ts.date() for ts in group.loc[group["kind"] == "FUT", "expiry"]}
        covered = {(d.year, d.month) for d in futures}
        month = group["expiry"].dt.to_period("M")
        last = group.groupby(month)["expiry"].max()
        extra = {ts.date() for ts in last if (ts.year, ts.month) not in covered}
        out[str(underlying)] = futures | extra
    return out


# ---- freeze quantities --------------------------------------------------------------------------


def read_freeze_quantities(path: Path | str = FREEZE_PATH) -> pd.DataFrame:
    """Return the dated freeze-quantity table (effective_from, underlying, freeze_qty, …)."""
    import pandas as pd

    frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    missing = {"effective_from", "underlying", "freeze_qty"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    frame["effective_from"] = pd.to_datetime(frame["effective_from"], format="%Y-%m-%d")
    frame["freeze_qty"] = frame["freeze_qty"].astype(int)
    if (frame["freeze_qty"] < 1).any():
        raise DataError(f"{path}: freeze_qty must be >= 1")
    return frame.sort_values("effective_from", kind="stable").reset_index(drop=True)


def freeze_quantities_on(day: date, path: Path | str = FREEZE_PATH) -> dict[str, int]:
    """Return {underlying: freeze quantity} in force on ``day`` (latest row not after it).

    Examples
    --------
    >>> freeze_quantities_on(date(2026, 5, 4))["NIFTY"]
    1800
    >>> "NIFTY" in freeze_quantities_on(date(2024, 4, 1))
    False
    """
    import pandas as pd

    frame = read_freeze_quantities(path)
    active = frame[frame["effective_from"] <= pd.Timestamp(day)]
    return dict(zip(active["underlying"], active["freeze_qty"].astype(int), strict=True))


def _today_ist() -> date:
    from velox.calendar import IST

    return datetime.now(IST).date()


def _apply_freeze(table: pd.DataFrame, as_of: date | None) -> pd.DataFrame:
    import pandas as pd

    limits = freeze_quantities_on(as_of or _today_ist())
    derivative = table["kind"].isin(["FUT", "CE", "PE"])
    values = table["underlying"].map(limits).where(derivative)
    table["freeze_qty"] = pd.array(values, dtype="Int64")
    return table


# ---- table building -----------------------------------------------------------------------------


def _empty_table() -> pd.DataFrame:
    import pandas as pd

    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the master's columns in order and their canonical dtypes."""
    import pandas as pd

    frame = frame.reindex(columns=list(COLUMNS))
    for col in ("id", "exchange", "symbol", "kind", "name", "underlying", "segment"):
        frame[col] = frame[col].astype(object)
    frame["expiry"] = pd.to_datetime(frame["expiry"]).astype("datetime64[ns]")
    frame["strike"] = frame["strike"].astype("float64")
    frame["tick_size"] = frame["tick_size"].astype("float64")
    frame["lot_size"] = frame["lot_size"].astype("int64")
    for col in ("freeze_qty", "exchange_token", "kite_token"):
        frame[col] = pd.array(frame[col], dtype="Int64")
    for col in ("angel_token", "angel_symbol"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame.reset_index(drop=True)


def _drop_bad_ids(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Drop rows whose id breaks Velox's id grammar, with a warning naming a few.

    Such an instrument could never be addressed (every entry point checks ids with
    :func:`velox.types.check_instrument_id`), and an id with a control character would forge
    log lines wherever it were printed; the rest of the master loads.
    """
    from velox.errors import ValidationError

    def ok(instrument_id: object) -> bool:
        try:
            check_instrument_id(instrument_id)
        except ValidationError:
            return False
        return True

    good = frame["id"].map(ok).astype(bool)
    if not good.all():
        logger.warning(
            "%s: %d row(s) with an invalid instrument id dropped, e.g. %s",
            path,
            int((~good).sum()),
            [repr(i)[:60] for i in frame.loc[~good, "id"].head(3)],
        )
    return frame[good]


def _dedupe(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    dup = frame["id"].duplicated()
    if dup.any():
        logger.warning(
            "%s: %d duplicate id(s) kept once (first wins), e.g. %s",
            path,
            int(dup.sum()),
            frame.loc[dup, "id"].head(3).tolist(),
        )
    return frame[~dup]


def _bad(path: Path, where: str, problem: str) -> DataError:
    return DataError(f"{path}: {where}: {problem}; fix or drop the row and reload")


def _parse_expiry(values: pd.Series, path: Path, where: Iterable[str], formats: Iterable[str]):  # noqa: ANN202
    import pandas as pd

    text = values.str.strip()
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    for fmt in formats:
        parsed = parsed.fillna(pd.to_datetime(text, format=fmt, errors="coerce"))
    bad = (text != "") & parsed.isna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise _bad(path, list(where)[i], f"expiry={text.iloc[i]!r} is not a date")
    return parsed


def _check_numbers(table: pd.DataFrame, path: Path, where: list[str]) -> None:
    """Raise on a tradable row with non-positive tick or lot size, or an option without strike."""
    tradable = table["kind"] != "INDEX"
    checks = (
        (tradable & ~(table["tick_size"] > 0), "tick_size", "must be > 0"),
        (tradable & ~(table["lot_size"] > 0), "lot_size", "must be > 0"),
        (table["kind"].isin(["CE", "PE"]) & ~(table["strike"] > 0), "strike", "must be > 0"),
        (table["kind"].isin(["FUT", "CE", "PE"]) & table["expiry"].isna(), "expiry", "is missing"),
    )
    for mask, column, problem in checks:
        if mask.any():
            i = int(mask.to_numpy().argmax())
            value = table[column].iloc[i]
            raise _bad(path, where[i], f"{column}={value!r} {problem} ({table['id'].iloc[i]})")


def _open_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def read_kite_csv(path: Path | str, *, as_of: date | None = None) -> pd.DataFrame:
    """Return a Kite Connect instruments CSV (``/instruments`` dump) as a master table.

    Accepts the official ``YYYY-MM-DD`` expiries and the ``DD-MM-YYYY`` some re-saved dumps use.
    Rows of segment ``INDICES`` become kind INDEX (tick and lot may be 0 there) named as in
    ``indices.csv`` by token (``NIFTY 50`` → ``NSE:NIFTY``), else without spaces. Rows of exchanges
    outside :data:`EXCHANGES` are skipped. A row with an unknown ``instrument_type`` or a
    non-positive tick/lot size raises :class:`~velox.errors.DataError` naming the file and line.

    Examples
    --------
    >>> t = read_kite_csv(KITE_SAMPLE)
    >>> row = t.set_index("id").loc["NFO:NIFTY24APR22500CE"]
    >>> int(row["lot_size"]), float(row["strike"]), str(row["expiry"].date())
    (50, 22500.0, '2024-04-25')
    """
    import pandas as pd

    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    need = {"instrument_token", "exchange_token", "tradingsymbol", "name", "expiry", "strike"}
    need |= {"tick_size", "lot_size", "instrument_type", "segment", "exchange"}
    if need - set(raw.columns):
        raise DataError(
            f"{path}: not a Kite instruments CSV, missing {sorted(need - set(raw.columns))}"
        )
    lines = [f"line {i + 2}" for i in range(len(raw))]
    keep = raw["exchange"].isin(EXCHANGES).to_numpy()
    if not keep.all():
        logger.debug("%s: skipped %d rows of other exchanges", path, int((~keep).sum()))
    raw = raw[keep].reset_index(drop=True)
    lines = [line for line, k in zip(lines, keep, strict=True) if k]

    kind = raw["instrument_type"].map(_KITE_KINDS)
    kind = kind.where(raw["segment"] != "INDICES", "INDEX")
    if kind.isna().any():
        i = int(kind.isna().to_numpy().argmax())
        raise _bad(
            path,
            lines[i],
            f"instrument_type={raw['instrument_type'].iloc[i]!r} is not one of EQ, FUT, CE, PE",
        )
    try:
        numbers = {c: pd.to_numeric(raw[c]) for c in ("strike", "tick_size", "lot_size")}
        tokens = {c: pd.to_numeric(raw[c]) for c in ("instrument_token", "exchange_token")}
    except ValueError as exc:
        raise DataError(f"{path}: a numeric column holds text ({exc}); fix the file") from None
    expiry = _parse_expiry(raw["expiry"], path, lines, ("%Y-%m-%d", "%d-%m-%Y"))
    derivative = kind.isin(["FUT", "CE", "PE"])
    option = kind.isin(["CE", "PE"])
    table = pd.DataFrame(
        {
            "exchange": raw["exchange"],
            "symbol": raw["tradingsymbol"],
            "kind": kind,
            "name": raw["name"],
            "expiry": expiry,
            "strike": numbers["strike"].where(option),
            "tick_size": numbers["tick_size"],
            "lot_size": numbers["lot_size"].where(kind != "INDEX", 1),
            "segment": raw["segment"],
            "exchange_token": tokens["exchange_token"],
            "kite_token": tokens["instrument_token"],
        }
    )
    index = table["kind"] == "INDEX"
    if index.any():  # a full dump's "NIFTY 50" becomes NSE:NIFTY, as in indices.csv
        named = _index_symbols("kite_token")
        table.loc[index, "symbol"] = [
            named.get(int(token), symbol.replace(" ", "").upper())
            for token, symbol in zip(
                table.loc[index, "kite_token"], table.loc[index, "symbol"], strict=True
            )
        ]
    table["id"] = table["exchange"] + ":" + table["symbol"]
    table["underlying"] = _kite_underlyings(table, derivative, path, lines)
    _check_numbers(table, path, lines)
    table = _dedupe(_drop_bad_ids(table, path), path)
    return _typed(_apply_freeze(table, as_of))


def _kite_underlyings(
    table: pd.DataFrame, derivative: pd.Series, path: Path, lines: list[str]
) -> pd.Series:
    """Return each row's underlying: Kite's ``name`` for derivatives, else the symbol itself.

    The official mock leaves ``name`` blank on options; there the underlying is what remains of
    the symbol once the expiry/strike/type suffix (monthly or weekly form) is removed.
    """
    out = table["symbol"].where(~derivative, table["name"]).copy()
    for i in (derivative & (table["name"].str.strip() == "")).to_numpy().nonzero()[0]:
        row = table.iloc[i]
        expiry = row["expiry"].date() if not _isna(row["expiry"]) else None
        found = None
        for monthly in (True, False):
            suffix = kite_symbol("", row["kind"], expiry, row["strike"], monthly=monthly)
            if row["symbol"].endswith(suffix) and len(row["symbol"]) > len(suffix):
                found = row["symbol"][: -len(suffix)]
                break
        if found is None:
            raise _bad(path, lines[i], f"cannot tell the underlying of {row['symbol']!r}")
        out.iloc[i] = found
    return out


def _isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def read_angel_json(path: Path | str, *, as_of: date | None = None) -> pd.DataFrame:
    """Return an Angel One ``OpenAPIScripMaster.json`` (optionally gzipped) as a master table.

    Angel's ``strike`` and ``tick_size`` are in paise and are divided by 100. Cash symbols lose
    the ``-EQ`` series suffix (``SBIN-EQ`` → ``NSE:SBIN``; other series such as ``-BE`` keep it,
    as Kite does); derivatives are renamed by :func:`kite_symbol`; AMXIDX indices become
    ``NSE:<name>`` (``NSE:NIFTY``, ``NSE:BANKNIFTY``; ``indices.csv`` wins by token). The
    blank-type NSE rows that duplicate an index under its exchange token (``NIFTY`` 26000, tick
    0) are skipped in favour of the AMXIDX row whose token SmartAPI's market-data calls use. A
    row with an unknown ``instrumenttype`` or a non-positive tick/lot size raises
    :class:`~velox.errors.DataError` naming the entry.

    Examples
    --------
    >>> t = read_angel_json(ANGEL_SAMPLE).set_index("angel_symbol")
    >>> row = t.loc["NIFTY26JUN2523000CE"]
    >>> row["id"], float(row["strike"]), float(row["tick_size"])
    ('NFO:NIFTY25JUN23000CE', 23000.0, 0.05)
    """
    import pandas as pd

    path = Path(path)
    try:
        rows = json.loads(_open_text(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON scrip master ({exc})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of instrument objects")
    raw = pd.DataFrame(rows, dtype=str).fillna("")
    need = {"token", "symbol", "name", "expiry", "strike", "lotsize", "instrumenttype"}
    need |= {"exch_seg", "tick_size"}
    if need - set(raw.columns):
        raise DataError(
            f"{path}: not an Angel scrip master, missing {sorted(need - set(raw.columns))}"
        )
    where = [f"entry {i + 1} (token {t})" for i, t in enumerate(raw["token"])]
    try:
        strike = pd.to_numeric(raw["strike"]) / 100.0
        tick = (pd.to_numeric(raw["tick_size"]) / 100.0).round(6)
        lot = pd.to_numeric(raw["lotsize"])
    except ValueError as exc:
        raise DataError(f"{path}: a numeric field holds text ({exc}); fix the file") from None

    itype = raw["instrumenttype"].str.strip()
    exchange = raw["exch_seg"].str.strip()
    symbol = raw["symbol"].str.strip()
    index_alias = (itype == "") & (tick <= 0) & ~symbol.str.contains("-")
    keep = (exchange.isin(EXCHANGES) & ~index_alias).to_numpy()
    if not keep.all():
        logger.debug(
            "%s: skipped %d rows (other exchanges, or index aliases of AMXIDX rows)",
            path,
            int((~keep).sum()),
        )
    kind = pd.Series(None, index=raw.index, dtype=object)
    kind[itype == ""] = "EQ"
    kind[itype.isin(_ANGEL_INDICES)] = "INDEX"
    kind[itype.isin(_ANGEL_FUTURES)] = "FUT"
    is_option = itype.isin(_ANGEL_OPTIONS)
    kind[is_option & symbol.str.endswith("CE")] = "CE"
    kind[is_option & symbol.str.endswith("PE")] = "PE"
    unknown = kind.isna().to_numpy() & keep
    if unknown.any():
        i = int(unknown.argmax())
        raise _bad(
            path,
            where[i],
            f"instrumenttype={itype.iloc[i]!r} (symbol {symbol.iloc[i]!r}) is not one of "
            f"'', AMXIDX, FUTIDX, FUTSTK, OPTIDX, OPTSTK",
        )
    expiry = _parse_expiry(raw["expiry"], path, where, ("%d%b%Y",))
    name = raw["name"].str.strip()
    table = pd.DataFrame(
        {
            "exchange": exchange,
            "kind": kind,
            "name": name,
            "underlying": name,
            "expiry": expiry,
            "strike": strike.where(kind.isin(["CE", "PE"])),
            "tick_size": tick,
            "lot_size": lot.where(kind != "INDEX", 1),
            "angel_token": raw["token"].str.strip(),
            "angel_symbol": symbol,
        }
    )
    table = table[keep]
    where = [w for w, k in zip(where, keep, strict=True) if k]
    table["exchange_token"] = pd.to_numeric(table["angel_token"]).where(
        table["kind"] != "INDEX"
    )  # Angel's token is the exchange token, except its own 999xxxxx index tokens
    table["exchange"] = table["exchange"].where(table["kind"] != "INDEX", "NSE")
    table["symbol"] = _angel_symbols(table)
    table["id"] = table["exchange"] + ":" + table["symbol"]
    table["segment"] = _segments(table)
    table["underlying"] = table["underlying"].where(
        table["kind"].isin(["FUT", "CE", "PE"]), table["symbol"]
    )
    _check_numbers(table.reset_index(drop=True), path, where)
    table = _dedupe(_drop_bad_ids(table, path), path)
    return _typed(_apply_freeze(table, as_of))


def _angel_symbols(table: pd.DataFrame) -> pd.Series:
    monthly = monthly_expiries(table)
    named = _index_symbols("angel_token")
    out = []
    for row in table.itertuples(index=False):
        if row.kind == "EQ":
            symbol = row.angel_symbol
            out.append(symbol[:-3] if symbol.endswith("-EQ") else symbol)
        elif row.kind == "INDEX":
            out.append(named.get(row.angel_token, row.name.replace(" ", "").upper()))
        else:
            expiry = row.expiry.date()
            known = monthly.get(row.underlying)
            is_monthly = expiry in known if known else None
            out.append(
                kite_symbol(row.underlying, row.kind, expiry, row.strike, monthly=is_monthly)
            )
    return _series(out, table.index)


def _series(values: list[object], index: pd.Index) -> pd.Series:
    import pandas as pd

    return pd.Series(values, index=index, dtype=object)


def _segments(table: pd.DataFrame) -> pd.Series:
    """Return Kite's segment names (NSE, BSE, NFO-FUT, NFO-OPT, INDICES) for each row."""
    segment = table["exchange"].copy()
    segment[table["kind"] == "FUT"] = table["exchange"] + "-FUT"
    segment[table["kind"].isin(["CE", "PE"])] = table["exchange"] + "-OPT"
    segment[table["kind"] == "INDEX"] = "INDICES"
    return segment


def _index_symbols(token_column: str) -> dict[object, str]:
    """Return {broker token: Velox index symbol} from the bundled ``indices.csv``."""
    table = read_indices_csv()
    known = table[table[token_column].notna()]
    keys = [int(t) if token_column == "kite_token" else str(t) for t in known[token_column]]
    return dict(zip(keys, known["symbol"], strict=True))


def read_indices_csv(path: Path | str = INDICES_PATH) -> pd.DataFrame:
    """Return the dated index list (``data/instruments/indices.csv``) as a master table."""
    import pandas as pd

    path = Path(path)
    raw = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    if not raw["id"].str.match(r"^[A-Z]+:[A-Z0-9&-]+$").all():
        raise DataError(f"{path}: ids must read EXCHANGE:SYMBOL without spaces")
    kite = pd.to_numeric(raw["kite_token"].replace("", None))
    table = pd.DataFrame(
        {
            "id": raw["id"],
            "exchange": raw["id"].str.split(":").str[0],
            "symbol": raw["id"].str.split(":").str[1],
            "kind": "INDEX",
            "name": raw["name"],
            "underlying": raw["id"].str.split(":").str[1],
            "expiry": pd.NaT,
            "strike": float("nan"),
            "tick_size": 0.0,
            "lot_size": 1,
            "segment": "INDICES",
            "exchange_token": kite // 256,  # Kite token = exchange token << 8 | segment
            "kite_token": kite,
            "angel_token": raw["angel_token"].replace("", None),
            "angel_symbol": raw["angel_symbol"].replace("", None),
        }
    )
    return _typed(table)


# ---- the master -------------------------------------------------------------------------------


class InstrumentMaster:
    """An instrument master: one row per instrument, looked up by id or either broker's token.

    Build it with :meth:`from_kite_csv`, :meth:`from_angel_json` or :func:`load_bundled_master`,
    and combine brokers with :meth:`merge`. The table is immutable by convention (methods return
    new masters); lookups build their indices on first use.

    Examples
    --------
    >>> master = load_bundled_master()
    >>> master.get("NSE:SBIN").tick_size
    0.05
    >>> master.by_kite_token(256265).id
    'NSE:NIFTY'
    """

    def __init__(self, table: pd.DataFrame | None = None) -> None:
        self._table = _empty_table() if table is None else _typed(table.copy())
        self._by_id: dict[str, int] | None = None
        self._by_kite: dict[int, int] | None = None
        self._by_angel: dict[str, int] | None = None

    @classmethod
    def from_kite_csv(cls, path: Path | str, *, as_of: date | None = None) -> InstrumentMaster:
        """Return a master read from a Kite instruments CSV (see :func:`read_kite_csv`)."""
        return cls(read_kite_csv(path, as_of=as_of))

    @classmethod
    def from_angel_json(cls, path: Path | str, *, as_of: date | None = None) -> InstrumentMaster:
        """Return a master read from an Angel scrip-master JSON (see :func:`read_angel_json`)."""
        return cls(read_angel_json(path, as_of=as_of))

    @property
    def table(self) -> pd.DataFrame:
        """The master as a DataFrame with exactly :data:`COLUMNS` (the store's schema)."""
        return self._table

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, instrument_id: object) -> bool:
        return instrument_id in self._ids()

    def __repr__(self) -> str:
        counts = self._table["kind"].value_counts().to_dict()
        return f"InstrumentMaster({len(self)} instruments: {counts})"

    def merge(self, other: InstrumentMaster) -> InstrumentMaster:
        """Return the union of two masters, one row per id, holding both brokers' tokens.

        Where both list an id, this master's non-missing values win and the other fills the gaps
        (so ``kite.merge(angel)`` keeps Kite's lot size and gains Angel's token and symbol). The
        two dumps may be from different dates: a differing lot or tick size is logged, not fixed.
        """
        import pandas as pd

        left, right = self._table, other.table
        common = left.merge(right, on="id", suffixes=("", "_other"))
        for col in ("lot_size", "tick_size", "exchange_token"):
            differs = common[col].notna() & common[f"{col}_other"].notna()
            differs &= common[col] != common[f"{col}_other"]
            if differs.any():
                logger.warning(
                    "merge: %d instruments differ in %s (kept the first master's), e.g. %s",
                    int(differs.sum()),
                    col,
                    common.loc[differs, "id"].head(3).tolist(),
                )
        both = pd.concat([left, right], ignore_index=True)
        merged = both.groupby("id", sort=False, dropna=False).first().reset_index()
        return InstrumentMaster(merged)

    # -- lookups --------------------------------------------------------------------------------

    def _ids(self) -> dict[str, int]:
        if self._by_id is None:
            self._by_id = {v: i for i, v in enumerate(self._table["id"].tolist())}
        return self._by_id

    def get(self, instrument_id: str) -> Instrument:
        """Return the :class:`~velox.types.Instrument` with this id.

        Raises :class:`~velox.errors.UnknownInstrument` with the closest known ids, or
        :class:`~velox.errors.ValidationError` (with them too) for an id that breaks the id
        grammar (:func:`velox.types.check_instrument_id`): ``"RELIANCE"``, ``"NSE:SBIN "``.

        Examples
        --------
        >>> load_bundled_master().get("NSE:RELIANCE").lot_size
        1
        """
        i = self._ids().get(instrument_id)
        if i is None:
            raise self._missing(instrument_id)
        return self._instrument(i)

    def _missing(self, instrument_id: str) -> VeloxError:
        """Return the error for an id not in the master: malformed, or merely unknown."""
        close = self._close_ids(instrument_id)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        try:
            check_instrument_id(instrument_id)
        except ValidationError as exc:  # a malformed id is not merely "unknown"
            return ValidationError(f"{exc}{hint}")
        return UnknownInstrument(
            f"unknown instrument {instrument_id!r}{hint} Ids read EXCHANGE:SYMBOL with Kite's "
            f"trading symbol (NSE:RELIANCE, NFO:NIFTY24APR22500CE); search with master.search()"
        )

    def _close_ids(self, instrument_id: object) -> list[str]:
        ids = self._ids()
        text = str(instrument_id).strip().upper()
        if len(text) > 64:  # garbage, not a typo
            return []
        candidates = [c for c in (text, f"NSE:{text}", f"NFO:{text}") if c in ids]
        if not candidates:
            prefix = text.split(":")[-1][:3]
            pool = [k for k in ids if k.split(":", 1)[-1].startswith(prefix)] or list(ids)
            candidates = difflib.get_close_matches(text, pool, n=3, cutoff=0.6)
        return candidates

    def by_kite_token(self, token: int | str) -> Instrument:
        """Return the instrument with this Kite ``instrument_token``."""
        if self._by_kite is None:
            tokens = self._table["kite_token"]
            self._by_kite = {
                int(t): i for i, t in enumerate(tokens.tolist()) if t is not None and not _isna(t)
            }
        i = self._by_kite.get(int(token))
        if i is None:
            raise UnknownInstrument(f"no instrument has Kite instrument_token {token}")
        return self._instrument(i)

    def by_angel_token(self, token: int | str) -> Instrument:
        """Return the instrument with this Angel SmartAPI ``symboltoken`` (an index's 999… too)."""
        if self._by_angel is None:
            tokens = self._table["angel_token"].tolist()
            self._by_angel = {str(t): i for i, t in enumerate(tokens) if t is not None}
        i = self._by_angel.get(str(token).strip())
        if i is None:
            raise UnknownInstrument(f"no instrument has Angel symboltoken {token}")
        return self._instrument(i)

    def row(self, instrument_id: str) -> pd.Series:
        """Return the full table row of an id (with both brokers' tokens and symbols)."""
        i = self._ids().get(instrument_id)
        if i is None:
            raise self._missing(instrument_id)
        return self._table.iloc[i]

    def _instrument(self, i: int) -> Instrument:
        row = self._table.iloc[i]
        expiry = None if _isna(row["expiry"]) else row["expiry"].date()
        return Instrument(
            id=row["id"],
            exchange=row["exchange"],
            symbol=row["symbol"],
            kind=InstrumentKind(row["kind"]),
            tick_size=float(row["tick_size"]),
            lot_size=int(row["lot_size"]),
            name=row["name"] or "",
            underlying=row["underlying"] or "",
            expiry=expiry,
            strike=None if _isna(row["strike"]) else float(row["strike"]),
            freeze_qty=None if _isna(row["freeze_qty"]) else int(row["freeze_qty"]),
            segment=row["segment"] or "",
        )

    # -- queries --------------------------------------------------------------------------------

    def search(
        self,
        text: str = "",
        *,
        kind: InstrumentKind | str | None = None,
        exchange: str | None = None,
        underlying: str | None = None,
        limit: int | None = 50,
    ) -> pd.DataFrame:
        """Return rows whose id, symbol or name contains ``text`` (case-insensitive), filtered.

        Examples
        --------
        >>> load_bundled_master().search("sbin", kind="EQ")["id"].tolist()
        ['BSE:SBIN', 'NSE:SBIN']
        """
        table = self._table
        mask = table["id"].notna()
        if text:
            needle = text.upper()
            mask &= table["id"].str.upper().str.contains(needle, regex=False) | table[
                "name"
            ].fillna("").str.upper().str.contains(needle, regex=False)
        if kind is not None:
            mask &= table["kind"] == InstrumentKind(kind).value
        if exchange is not None:
            mask &= table["exchange"] == exchange.upper()
        if underlying is not None:
            mask &= table["underlying"] == underlying.upper()
        out = table[mask].sort_values(["kind", "expiry", "strike", "id"], na_position="first")
        return out.head(limit) if limit else out

    def expiries(self, underlying: str, kind: InstrumentKind | str | None = None) -> list[date]:
        """Return the sorted expiry dates listed for ``underlying`` (options and futures)."""
        table = self._table
        mask = (table["underlying"] == underlying.upper()) & table["expiry"].notna()
        if kind is not None:
            mask &= table["kind"] == InstrumentKind(kind).value
        return sorted({ts.date() for ts in table.loc[mask, "expiry"]})

    def options(self, underlying: str, expiry: date | str | None = None) -> pd.DataFrame:
        """Return the option chain of ``underlying`` for ``expiry`` (default: the nearest one).

        Sorted by strike then CE/PE.

        Examples
        --------
        >>> chain = load_bundled_master().options("NIFTY", "2024-04-25")
        >>> chain["id"].head(2).tolist()
        ['NFO:NIFTY24APR19600CE', 'NFO:NIFTY24APR19600PE']
        """
        import pandas as pd

        table = self._table
        chain = table[
            (table["underlying"] == underlying.upper()) & table["kind"].isin(["CE", "PE"])
        ]
        if chain.empty:
            raise UnknownInstrument(f"no options listed for underlying {underlying!r}")
        if expiry is None:
            day = chain["expiry"].min()
        else:
            day = pd.Timestamp(expiry)
            if not (chain["expiry"] == day).any():
                listed = ", ".join(str(d) for d in self.expiries(underlying, None)[:8])
                raise UnknownInstrument(
                    f"no {underlying} options expire on {day.date()}; listed expiries: {listed}"
                )
        return chain[chain["expiry"] == day].sort_values(["strike", "kind"]).reset_index(drop=True)


def load_bundled_master(*, as_of: date | None = None) -> InstrumentMaster:
    """Return the master built from the files shipped in ``data/instruments/``.

    Indices (``indices.csv``) come first, then the Kite Apr-2024 sample, the Kite official mock,
    and the Angel Apr-2025 sample; earlier sources win where an id repeats (see
    :meth:`InstrumentMaster.merge`). ``as_of`` picks the freeze quantities (default: today, IST).

    Examples
    --------
    >>> master = load_bundled_master()
    >>> row = master.row("NSE:NIFTY")
    >>> int(row["kite_token"]), row["angel_token"]
    (256265, '99926000')
    """
    return InstrumentMaster(_bundled_table(as_of or _today_ist()))


@functools.lru_cache(maxsize=4)
def _bundled_table(as_of: date) -> pd.DataFrame:
    # Parsing the three files takes most of a second; the CLI and notebooks ask repeatedly.
    master = InstrumentMaster(read_indices_csv())
    for part in (
        InstrumentMaster.from_kite_csv(KITE_SAMPLE, as_of=as_of),
        InstrumentMaster.from_kite_csv(KITE_MOCK, as_of=as_of),
        InstrumentMaster.from_angel_json(ANGEL_SAMPLE, as_of=as_of),
    ):
        master = master.merge(part)
    return with_angel_cash_tokens(master.table, ANGEL_NSE_CASH)


def with_angel_cash_tokens(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Return ``table`` with the SmartAPI token and symbol of each NSE equity that has none,
    from an Angel ``token,symbol,name`` list (``SBIN-EQ`` → NSE:SBIN). A listed token that is
    not the row's NSE exchange token is refused: the two are the same number at Angel."""
    import pandas as pd

    tokens = pd.read_csv(path, dtype=str, usecols=["token", "symbol"])
    cash = tokens[tokens["symbol"].str.endswith("-EQ")]
    by_symbol = dict(zip(cash["symbol"].str[:-3], zip(cash["token"], cash["symbol"], strict=True),
                         strict=True))  # fmt: skip
    table = table.copy()
    rows = (table["exchange"] == "NSE") & table["angel_token"].isna()
    for k in table.index[rows]:
        found = by_symbol.get(table.at[k, "symbol"])
        if found is None:
            continue
        exchange_token = table.at[k, "exchange_token"]
        if pd.notna(exchange_token) and int(exchange_token) != int(found[0]):
            raise DataError(f"{path.name}: {found[1]} is token {found[0]} but "
                            f"{table.at[k, 'id']}'s NSE token is {exchange_token}")  # fmt: skip
        table.at[k, "angel_token"], table.at[k, "angel_symbol"] = found
    return table


__all__ = [
    "COLUMNS",
    "EXCHANGES",
    "InstrumentMaster",
    "format_strike",
    "freeze_quantities_on",
    "kite_symbol",
    "load_bundled_master",
    "looks_monthly",
    "monthly_expiries",
    "read_angel_json",
    "read_freeze_quantities",
    "read_indices_csv",
    "read_kite_csv",
    "with_angel_cash_tokens",
]
