-- 0001: the Velox schema. Timestamps are timestamptz (stored as UTC); readers convert to IST.

CREATE TABLE instruments (
    id             text PRIMARY KEY,            -- "NSE:RELIANCE", "NFO:NIFTY24APR22500CE"
    exchange       text NOT NULL,
    symbol         text NOT NULL,
    kind           text NOT NULL,
    name           text,
    underlying     text,
    expiry         date,
    strike         float8,
    tick_size      float8 NOT NULL,
    lot_size       integer NOT NULL,
    freeze_qty     integer,
    segment        text,
    exchange_token bigint,
    kite_token     bigint,
    angel_token    text,
    angel_symbol   text
);
CREATE INDEX instruments_kite_token_idx ON instruments (kite_token);
CREATE INDEX instruments_angel_token_idx ON instruments (angel_token);
CREATE INDEX instruments_underlying_expiry_idx ON instruments (underlying, expiry);

-- Candles labelled by bar START. No foreign key to instruments: data may be imported before the
-- instrument master is loaded.
CREATE TABLE bars (
    instrument_id text NOT NULL,
    timeframe     text NOT NULL,
    ts            timestamptz NOT NULL,
    open          float8 NOT NULL,
    high          float8 NOT NULL,
    low           float8 NOT NULL,
    close         float8 NOT NULL,
    volume        float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (instrument_id, timeframe, ts)
);

CREATE TABLE ticks (
    instrument_id text NOT NULL,
    ts            timestamptz NOT NULL,
    seq           bigint NOT NULL DEFAULT 0,   -- orders several ticks sharing a timestamp
    price         float8 NOT NULL,
    qty           bigint,
    volume        bigint,
    bid           float8,
    ask           float8,
    bid_qty       bigint,
    ask_qty       bigint,
    oi            bigint,
    PRIMARY KEY (instrument_id, ts, seq)
);

CREATE TABLE runs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,                 -- backtest | replay | paper | live
    strategy    text,
    params      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status      text NOT NULL DEFAULT 'running',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    summary     jsonb
);

CREATE TABLE orders (
    client_id       text PRIMARY KEY,          -- idempotency key chosen by Velox
    run_id          bigint REFERENCES runs (id),
    mode            text NOT NULL,             -- backtest | replay | paper | live
    instrument_id   text NOT NULL,
    side            text NOT NULL,
    qty             bigint NOT NULL,
    order_type      text NOT NULL,
    product         text NOT NULL,
    validity        text NOT NULL DEFAULT 'DAY',
    limit_price     float8,
    trigger_price   float8,
    tag             text,
    status          text NOT NULL,
    broker_order_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_run_idx ON orders (run_id);

-- The audit trail of every order: rows are only ever appended (see trigger below).
CREATE TABLE order_events (
    id          bigserial PRIMARY KEY,
    client_id   text NOT NULL,
    ts          timestamptz NOT NULL,
    status      text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    mode        text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_client_idx ON order_events (client_id, id);

CREATE FUNCTION velox_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'append a new event instead of changing history';
END;
$$;
CREATE TRIGGER order_events_append_only
    BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION velox_forbid_change();
CREATE TRIGGER order_events_no_truncate
    BEFORE TRUNCATE ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION velox_forbid_change();

CREATE TABLE fills (
    id            bigserial PRIMARY KEY,
    fill_id       text NOT NULL UNIQUE,        -- broker trade id (or simulator id)
    client_id     text NOT NULL,
    run_id        bigint REFERENCES runs (id),
    mode          text NOT NULL,
    instrument_id text NOT NULL,
    side          text NOT NULL,
    qty           bigint NOT NULL,
    price         float8 NOT NULL,
    fees          float8 NOT NULL DEFAULT 0,
    ts            timestamptz NOT NULL
);
CREATE INDEX fills_client_idx ON fills (client_id);

CREATE TABLE positions (
    mode          text NOT NULL,
    run_id        bigint NOT NULL DEFAULT 0,   -- 0 = the account outside any run
    instrument_id text NOT NULL,
    product       text NOT NULL,
    qty           bigint NOT NULL,
    avg_price     float8 NOT NULL,
    realised_pnl  float8 NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mode, run_id, instrument_id, product)
);

-- One row per imported source file, so an unchanged file is not imported twice.
CREATE TABLE imports (
    source_key    text PRIMARY KEY,
    sha256        text NOT NULL,
    instrument_id text NOT NULL,
    timeframe     text NOT NULL,
    rows          bigint NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now()
);
