-- When a data file's ZIP was removed from disk: its link expired (the
-- scheduler sweeps them), or a contact in it was erased. The record stays
-- (who asked for which run, sent to whom); NULL while the file is kept.
ALTER TABLE data_files ADD COLUMN removed_at TEXT;
