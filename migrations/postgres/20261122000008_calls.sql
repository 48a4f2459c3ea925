-- Automatic calls are conversations too (channel `call`): the provider's
-- call sid is the provider id, the status follows its reports (queued,
-- initiated, ringing, in-progress, then completed, busy, no-answer, failed
-- or canceled), sent_at is when it was placed. These say how it ended.

ALTER TABLE conversations ADD COLUMN duration_secs BIGINT;
ALTER TABLE conversations ADD COLUMN ended_at TEXT;
