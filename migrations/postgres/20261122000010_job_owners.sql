-- Background jobs (bulk runs, contact imports) name the process running
-- them and when it last showed it was alive (milliseconds since the epoch).
-- Several processes share one database: a job is taken over, or marked
-- failed, only once its owner has gone quiet (runtime::jobs).
ALTER TABLE bulk_runs ADD COLUMN owner TEXT;
ALTER TABLE bulk_runs ADD COLUMN heartbeat_at BIGINT;
ALTER TABLE contact_imports ADD COLUMN owner TEXT;
ALTER TABLE contact_imports ADD COLUMN heartbeat_at BIGINT;
