-- 0014: delivering stored alerts (velox/alerts, docs/alerts.md): one row per alert and
-- destination, every attempt logged, and who subscribed to what.
--
-- Written by velox.alerts.worker. A worker claims due rows with FOR UPDATE SKIP LOCKED and a
-- lease (status 'sending', lease_until): a second worker skips them, and a worker that dies
-- mid-send leaves a lease that expires, so the row is sent again once (never a 'sent' row).

-- Per-user subscriptions: which destinations get which kinds and severities. A user with
-- account links (user_links, 0011) only gets alerts of those accounts; a disabled user none.
CREATE TABLE alert_subscriptions (
    id           bigserial PRIMARY KEY,
    username     text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    channel      text NOT NULL CHECK (channel IN ('telegram', 'email', 'webhook')),
    target       text NOT NULL CHECK (length(target) BETWEEN 1 AND 512),  -- chat id, address, URL
    min_severity text NOT NULL DEFAULT 'info'
                 CHECK (min_severity IN ('info', 'warning', 'critical')),
    kinds        text[],  -- NULL: every kind
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (username, channel, target)
);

-- Which alerts a worker has routed (decided their destinations), with how many it found: an
-- alert no destination wants (below every threshold, no subscriber) is routed once with 0,
-- so it is neither rescanned on every pass nor lost from view.
CREATE TABLE alert_routing (
    alert_id    bigint PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
    routed_at   timestamptz NOT NULL,
    deliveries  integer NOT NULL
);

CREATE TABLE alert_deliveries (
    id              bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('telegram', 'email', 'webhook')),
    target          text NOT NULL,
    username        text,  -- the subscriber; NULL for the configured default destination
    -- pending: due at next_attempt_at; sending: claimed until lease_until; sent: acknowledged
    -- by the channel (never sent again); suppressed: a duplicate within the window (reason in
    -- last_error); failed: gave up after the last attempt (or a permanent error)
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'suppressed', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    claimed_by      text,
    sent_at         timestamptz,
    -- the delivery whose message carried this one (itself, or a storm-control summary's first)
    message_id      bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, channel, target)
);
CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX alert_deliveries_sent_idx ON alert_deliveries (channel, target, sent_at);

-- Append-only: every attempt, with when it started and ended, its outcome and error. An
-- attempt whose worker died has no finished_at.
CREATE TABLE alert_delivery_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('sent', 'retry', 'failed')),
    error       text
);
CREATE INDEX alert_delivery_attempts_delivery_idx ON alert_delivery_attempts (delivery_id);
