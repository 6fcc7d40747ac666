-- 0015: users' price/indicator alert rules (velox/alerts/rules.py, docs/alert-rules.md).
--
-- A rule is kept as the text the user wrote (re-parsed by velox.alerts.rules.parse_rule when an
-- engine loads it, so the grammar has one definition) plus the parts an engine selects on: its
-- instrument and timeframe. last_fired_bar is the start of the last bar it fired at: a
-- restarted engine that re-evaluates that bar does not fire it again.

CREATE TABLE alert_rules (
    id             bigserial PRIMARY KEY,
    owner          text NOT NULL CHECK (length(owner) BETWEEN 1 AND 64),
    rule           text NOT NULL CHECK (length(rule) BETWEEN 1 AND 500),
    instrument_id  text NOT NULL,
    timeframe      text NOT NULL,
    severity       text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_fired_at  timestamptz,
    last_fired_bar timestamptz,
    fired_count    integer NOT NULL DEFAULT 0
);
CREATE INDEX alert_rules_enabled_idx ON alert_rules (instrument_id, timeframe) WHERE enabled;
