"""Reusable Panel components of the trader console; each works alone in a notebook cell.

>>> import velox.ui as ui                                   # doctest: +SKIP
>>> ui.console()                     # the whole console on the default store   # doctest: +SKIP
>>> ui.Watchlist(run_id="P1")        # one component                             # doctest: +SKIP
>>> ui.PerformancePanel(run_id="R1") # velox.analytics of a run, read-only          # doctest: +SKIP

Components (:class:`pn.viewable.Viewer`) take a :class:`Desk` — whose screen they are on — and
read the run's state from the store through :class:`~velox.ui.live.LiveRuns`, one reader per
process; their buttons store commands the engines carry out. See ``docs/web.md``.
"""

from velox.ui.chart import CandleChart
from velox.ui.console import TradingConsole, console
from velox.ui.controls import ModeSwitch, OrderTicket, RiskPanel
from velox.ui.desk import Desk
from velox.ui.live import LiveRuns, RunSnapshot
from velox.ui.performance import PerformancePanel
from velox.ui.tables import Blotter, PositionsTable
from velox.ui.watchlist import Watchlist

__all__ = [
    "Blotter",
    "CandleChart",
    "Desk",
    "LiveRuns",
    "ModeSwitch",
    "OrderTicket",
    "PerformancePanel",
    "PositionsTable",
    "RiskPanel",
    "RunSnapshot",
    "TradingConsole",
    "Watchlist",
    "console",
]
