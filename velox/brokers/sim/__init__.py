"""The simulated exchange (:mod:`.exchange`) and paper trading's simulator server (:mod:`.paper`).

Replay and paper trading are the same :class:`SimBroker`: fed replayed ticks in a backtest, fed
a paced replay (or, with a broker's market data, live ticks) in paper trading. Only
``SimBroker``/``SimConfig``/``ChargeModel`` are imported here; the paper server and its link
load on first use of :mod:`velox.brokers.sim.paper`.
"""

from velox.brokers.sim.exchange import ChargeModel, SimBroker, SimConfig

__all__ = ["SimBroker", "SimConfig", "ChargeModel"]
