"""Named universes of instruments: lists a scan, a sweep or a cross-sectional strategy can name.

A universe is a tuple of instrument ids (``"NSE:RELIANCE"``). The scanner also understands
``"all"``: every instrument with bars at the scan's timeframe, which depends on what is stored
and so is resolved by :func:`velox.scan`, not here.

=============  ======================================================================
name           instruments
=============  ======================================================================
``nifty50``    the 44 NIFTY-50 stocks bundled with daily bars 2017–2022 (:data:`NIFTY50`)
=============  ======================================================================

Examples
--------
>>> from velox.universes import NIFTY50, universe
>>> len(NIFTY50), NIFTY50[0]
(44, 'NSE:ADANIPORTS')
>>> universe("nifty50") == NIFTY50
True
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from velox.errors import ValidationError

__all__ = ["NIFTY50", "UNIVERSES", "ALL", "universe", "resolve"]

#: The bundled NIFTY-50 stocks with daily bars 2017–2022. HDFC, merged into HDFC Bank in 2023
#: and not in today's instrument master, is bundled too but is not listed. The same list as
#: ``strategies/momentum_rotation.py``'s instruments (tested): strategies import only
#: ``velox.strategy`` and ``velox.indicators``, so the strategy keeps its own copy.
NIFTY50: tuple[str, ...] = tuple(
    f"NSE:{symbol}"
    for symbol in (
        "ADANIPORTS", "ASIANPAINT", "AXISBANK", "BAJAJ-AUTO", "BAJAJFINSV", "BAJFINANCE",
        "BHARTIARTL", "BPCL", "BRITANNIA", "CIPLA", "COALINDIA", "DIVISLAB", "DRREDDY",
        "EICHERMOT", "GRASIM", "HCLTECH", "HDFCBANK", "HDFCLIFE", "HEROMOTOCO", "HINDALCO",
        "HINDUNILVR", "ICICIBANK", "INDUSINDBK", "INFY", "IOC", "JSWSTEEL", "KOTAKBANK", "M&M",
        "NESTLEIND", "NTPC", "ONGC", "POWERGRID", "RELIANCE", "SBILIFE", "SBIN", "SHREECEM",
        "SUNPHARMA", "TATACONSUM", "TATAMOTORS", "TCS", "TECHM", "TITAN", "ULTRACEMCO", "UPL",
    )
)  # fmt: skip

#: Universe name → instrument ids.
UNIVERSES: dict[str, tuple[str, ...]] = {"nifty50": NIFTY50}

#: The name of the universe of every instrument with bars at the timeframe (see the module doc).
ALL = "all"


def universe(name: str) -> tuple[str, ...]:
    """Return the instrument ids of the universe called ``name`` (case-insensitive).

    Raises
    ------
    velox.errors.ValidationError
        For an unknown name, with the closest known one and the list.

    Examples
    --------
    >>> universe("NIFTY50")[-1]
    'NSE:UPL'
    """
    key = name.strip().lower()
    if key in UNIVERSES:
        return UNIVERSES[key]
    known = [*UNIVERSES, ALL]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValidationError(
        f"unknown universe {name!r}: {hint}known universes are {', '.join(known)}, or give a "
        "list of instrument ids such as ['NSE:RELIANCE', 'NSE:TCS']"
    )


def resolve(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Return the instrument ids a universe ``spec`` names, in order and without repeats.

    Notebook and pipeline parameters arrive as text (``velox pipeline run … -p universe
    nifty50``), so one function reads every spelling: a named universe (``"nifty50"``), ids
    separated by commas (``"NSE:SBIN, NSE:TCS"``) or a list of ids. ``"all"`` depends on what
    is stored and is left to :func:`velox.scan`.

    Raises
    ------
    velox.errors.ValidationError
        For an unknown name, a malformed id or an empty universe.

    Examples
    --------
    >>> resolve("NSE:SBIN, NSE:TCS,NSE:SBIN")
    ('NSE:SBIN', 'NSE:TCS')
    >>> resolve("nifty50")[:2]
    ('NSE:ADANIPORTS', 'NSE:ASIANPAINT')
    >>> resolve(["NSE:INFY"])
    ('NSE:INFY',)
    """
    from velox.types import check_instrument_id

    if isinstance(spec, str):
        text = spec.strip()
        if ":" not in text and text:
            if text.lower() == ALL:
                raise ValidationError(
                    "universe 'all' means every stored instrument, which only velox.scan "
                    "resolves; name a universe (nifty50) or list instrument ids here"
                )
            return universe(text)
        ids = [part.strip() for part in text.split(",") if part.strip()]
    elif isinstance(spec, Sequence):
        ids = list(spec)
    else:
        raise ValidationError(
            f"universe must be a name or instrument ids, not {type(spec).__name__}"
        )
    if not ids:
        raise ValidationError("the universe is empty; give instrument ids or a name ('nifty50')")
    for instrument_id in ids:
        check_instrument_id(instrument_id)
    return tuple(dict.fromkeys(ids))
