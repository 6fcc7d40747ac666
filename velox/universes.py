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

from velox.errors import ValidationError

__all__ = ["NIFTY50", "UNIVERSES", "ALL", "universe"]

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
