-- 0006: equity curves stored in blocks of points (one row per block) instead of one row per
-- point, so recording a replay costs a few percent instead of doubling it.
--
-- A replay of 1,000,000 one-minute bars records 1,000,000 equity points. As rows of 0004's
-- run_equity (a btree key per point) they took ~1.3 s of COPY, more than a vectorised replay
-- itself (bench/engine.py, record=True). As blocks of up to 16,384 points (two bytea columns of
-- big-endian int8 / float8, the same encoding as tick_blocks) the same curve is ~60 rows and
-- tens of milliseconds. Store.run_equity reads the blocks and decodes them with numpy.
--
-- A block is keyed by (run_id, first_ns); a batch the RunRecorder retries after a commit whose
-- outcome was unknown cuts its blocks at the same points, so it replaces what it wrote instead of
-- adding to it. `written` orders the blocks by when they were (re)written: when two blocks hold
-- the same ts_ns, the one written last wins, which keeps 0004's "the last value recorded of a
-- time wins" across batches. The existing curves move into one block per run, unchanged.

CREATE SEQUENCE run_equity_written;

CREATE TABLE run_equity_blocks (
    run_id   text NOT NULL,
    first_ns bigint NOT NULL,   -- the block's first (smallest) ts_ns
    last_ns  bigint NOT NULL,   -- its last (largest) ts_ns
    points   integer NOT NULL CHECK (points > 0),
    ts_ns    bytea NOT NULL,    -- points × big-endian int8: engine time, UTC epoch ns, ascending
    equity   bytea NOT NULL,    -- points × big-endian IEEE 754 float8: the bits recorded
    written  bigint NOT NULL DEFAULT nextval('run_equity_written'),
    PRIMARY KEY (run_id, first_ns),
    CHECK (length(ts_ns) = 8 * points AND length(equity) = 8 * points)
);
-- Stored out of line uncompressed, as tick_blocks: compressing float bits costs more time than
-- it saves space, and slices are read without decompressing the whole value.
ALTER TABLE run_equity_blocks
    ALTER COLUMN ts_ns SET STORAGE EXTERNAL, ALTER COLUMN equity SET STORAGE EXTERNAL;

INSERT INTO run_equity_blocks (run_id, first_ns, last_ns, points, ts_ns, equity)
SELECT run_id, min(ts_ns), max(ts_ns), count(*),
       string_agg(int8send(ts_ns), ''::bytea ORDER BY ts_ns),
       string_agg(float8send(equity), ''::bytea ORDER BY ts_ns)
FROM run_equity
GROUP BY run_id;

DROP TABLE run_equity;

-- The curve as rows, with 0004's columns, for SQL users (Velox reads run_equity_blocks). Each
-- block is read from TOAST once; decoding costs a few µs per point of server time.
CREATE VIEW run_equity AS
SELECT DISTINCT ON (p.run_id, p.ts_ns) p.run_id, p.ts_ns,
       timestamptz '1970-01-01 00:00:00+00'
           + floor(p.ts_ns::numeric / 1000)::bigint * interval '1 microsecond' AS ts,
       p.equity
FROM (
    SELECT d.run_id, d.written, velox_int8_at(d.ts_ns, i) AS ts_ns,
           velox_float8_at(d.equity, i) AS equity
    FROM run_equity_blocks AS b
    CROSS JOIN LATERAL (
        SELECT b.run_id, b.written, b.points, b.ts_ns || ''::bytea AS ts_ns,
               b.equity || ''::bytea AS equity
        OFFSET 0
    ) AS d
    CROSS JOIN LATERAL generate_series(0, d.points - 1) AS i
) AS p
ORDER BY p.run_id, p.ts_ns, p.written DESC;
