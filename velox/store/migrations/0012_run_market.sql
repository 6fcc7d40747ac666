-- 0012: live market data of running engines, for the trader console (velox/ui, docs/web.md).
--
-- Written by velox.store.RunRecorder from the engine's ticks (paper and live runs; a bar
-- replay has no ticks and writes none): the latest quote of each instrument, and 1-minute
-- candles, the forming one upserted in place on every batch and marked closed once its minute
-- has passed. A console reads these instead of talking to an engine or a broker.

CREATE TABLE run_quotes (
    run_id        text NOT NULL REFERENCES runs (run_id),
    instrument_id text NOT NULL,
    ts            timestamptz NOT NULL,  -- exchange time of the last tick
    ltp           float8 NOT NULL,
    volume        bigint,                -- the day's cumulative traded volume, as ticks carry it
    open          float8 NOT NULL,       -- the day's first, highest and lowest price seen
    high          float8 NOT NULL,
    low           float8 NOT NULL,
    prev_close    float8,                -- the last price of the previous day seen, if any
    bid           float8,
    ask           float8,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, instrument_id)
);

CREATE TABLE run_candles (
    run_id        text NOT NULL REFERENCES runs (run_id),
    instrument_id text NOT NULL,
    start         timestamptz NOT NULL,  -- the minute the candle opens (UTC; IST minutes align)
    open          float8 NOT NULL,
    high          float8 NOT NULL,
    low           float8 NOT NULL,
    close         float8 NOT NULL,
    volume        bigint NOT NULL,       -- traded in the minute (differences of the cumulative)
    closed        boolean NOT NULL,
    PRIMARY KEY (run_id, instrument_id, start)
);
