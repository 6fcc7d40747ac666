-- 0016: the recorder's per-record tables lose their foreign key to runs, as run_equity never had
-- one (0004) and run_equity_blocks neither (0006).
--
-- A foreign key makes PostgreSQL run a referential-integrity trigger for every inserted row: a
-- query of runs with FOR KEY SHARE, per order and per fill. Recording a replay of 1,000,000 bars
-- (≈ 39,000 orders and 39,000 fills, bench/record_overhead.py) spent three quarters of the
-- server's time on those triggers: COPYing 12,000 orders and 12,000 fills took 0.55 s with them
-- and 0.12 s without. The rows are only ever written by a RunRecorder, which refuses a run id
-- that is not in runs when it is made (Store.run), and runs are never deleted, so the check the
-- triggers made per row is made once per run instead.

ALTER TABLE run_orders DROP CONSTRAINT IF EXISTS run_orders_run_id_fkey;
ALTER TABLE run_fills DROP CONSTRAINT IF EXISTS run_fills_run_id_fkey;
