"""THE event loop of Velox, for replay, paper and live alike.

=====================  =====================================================================
module                 what it holds
=====================  =====================================================================
``core``               :class:`Engine`: feed → clock → broker → OMS → strategy → risk → broker
``fast``               the compiled fast path of a bar replay (``_kernels``: its numba loops)
``commands``           operator commands from the store, executed exactly once
``journal``            what a running engine reports as it goes (its run journal, alerts)
``result``             :class:`RunResult`: trades, orders, fills and equity of a run
=====================  =====================================================================

Replay, paper and live differ only in the feed, broker, clock and audit log handed to the
engine (wired in :mod:`velox.modes`); there is no ``if paper:`` anywhere.
"""

from velox.engine.core import MODES, Engine
from velox.engine.result import RunResult, Trade

__all__ = ["Engine", "MODES", "RunResult", "Trade"]
