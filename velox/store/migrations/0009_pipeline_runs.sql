-- 0009: pipeline runs, one row per execution of a notebook by `velox pipeline run` or the
-- scheduler (`velox pipeline schedule`), see docs/pipelines.md.
--
-- Written by Store.start_pipeline_run / finish_pipeline_run / skip_pipeline_run
-- (velox/store/pipelines.py). A scheduled run is keyed by (pipeline, slot): the slot is the
-- scheduled IST time the run is for, so a slot runs at most once however often the scheduler
-- restarts or wakes; two schedulers racing for one slot insert one row (the other's INSERT does
-- nothing). Manual runs have no slot (NULL, which the unique key does not compare).

CREATE TABLE pipeline_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline     text NOT NULL CHECK (pipeline ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    notebook     text NOT NULL,                        -- the source notebook, absolute path
    parameters   jsonb NOT NULL DEFAULT '{}'::jsonb,   -- as passed to papermill
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    trigger      text NOT NULL CHECK (trigger IN ('manual', 'schedule')),
    slot         timestamptz,                          -- the scheduled time; NULL when manual
    triggered_by text NOT NULL DEFAULT '',             -- user@host (and pid) that started it
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    duration     float8,                               -- seconds, papermill start to finish
    output_dir   text,                                 -- data/runs/<date>/<name>-<time>/
    output_path  text,                                 -- the executed .ipynb
    html_path    text,                                 -- its HTML export
    -- {"cell_index", "execution_count", "ename", "evalue", "source"} of the failing cell, or
    -- {"ename", "evalue"} when the run failed outside a cell, or {"reason"} when skipped.
    error        jsonb,
    CHECK ((trigger = 'schedule') = (slot IS NOT NULL)),
    CHECK ((status = 'running') = (finished_at IS NULL)),
    UNIQUE (pipeline, slot)
);
CREATE INDEX pipeline_runs_started_idx ON pipeline_runs (started_at DESC, id DESC);
CREATE INDEX pipeline_runs_running_idx ON pipeline_runs (pipeline) WHERE status = 'running';
