-- 0008: every audit row carries the market time of its event and, separately, the wall time it
-- was written; order_events rows name the run they belong to.
--
-- ts (unchanged) is the engine's time of the event: the replayed or live market's time, never the
-- wall time of a restart. written_at is the server's clock when the row was inserted. run_id lets
-- a restarted engine read back every row of its run, also those of orders it did not create (the
-- broker's MIS square-off, another terminal's orders), whose client ids do not start with
-- "<run_id>-". Rows written before 0008 have run_id NULL (and risk_events rows written_at NULL:
-- their write time was not kept).

ALTER TABLE order_events RENAME COLUMN recorded_at TO written_at;
ALTER TABLE order_events ADD COLUMN run_id text;
CREATE INDEX order_events_run_idx ON order_events (run_id, id) WHERE run_id IS NOT NULL;

ALTER TABLE risk_events ADD COLUMN written_at timestamptz;
ALTER TABLE risk_events ALTER COLUMN written_at SET DEFAULT now();
