-- 0007: imports that never silently overwrite, and an audit of every import.
--
-- Why: the skip shortcut was keyed by file path, so importing another file under a series and
-- then re-importing the original said "unchanged; skipped" and left the wrong bars in place.
-- Every bar write now bumps its series' revision; an import is skipped only when the same bytes
-- were the last write to the same series (sha256 + series + revision), never by path.

ALTER TABLE bar_series ADD COLUMN revision bigint NOT NULL DEFAULT 0;

-- Rows recorded before 0007 are keyed by path ("instrument|timeframe|path"); the new key is
-- "instrument|timeframe", so they never match again: each file is imported once more, which is
-- harmless (identical rows are not a conflict). They are kept as the record they are.
ALTER TABLE imports ADD COLUMN series_revision bigint NOT NULL DEFAULT 0;

-- One row per import that wrote bars: who, when, which bytes, into which series, how many rows,
-- and how many stored bars it replaced (non-zero only with replace=True / --replace).
CREATE TABLE import_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    imported_by   text NOT NULL,
    source        text NOT NULL,
    sha256        text NOT NULL,
    instrument_id text NOT NULL,
    timeframe     text NOT NULL,
    rows          bigint NOT NULL,
    replaced_rows bigint NOT NULL,
    replace       boolean NOT NULL
);
CREATE INDEX import_log_series_idx ON import_log (instrument_id, timeframe, id);
CREATE TRIGGER import_log_append_only
    BEFORE UPDATE OR DELETE ON import_log
    FOR EACH ROW EXECUTE FUNCTION velox_forbid_change();
CREATE TRIGGER import_log_no_truncate
    BEFORE TRUNCATE ON import_log
    FOR EACH STATEMENT EXECUTE FUNCTION velox_forbid_change();
