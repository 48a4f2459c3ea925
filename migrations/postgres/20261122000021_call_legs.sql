-- Click-to-call's contact leg (DESIGN §11). The workspace's call record
-- follows the agent's call (provider_id, status, answered_at, ended_at,
-- duration_secs); the call that leg dials to the contact reports with its
-- own sid and the agent's as ParentCallSid, and these follow it: its sid,
-- status (queued … completed, busy, no-answer, failed, canceled), when it
-- started ringing, was answered and ended, and how long it lasted.
ALTER TABLE conversations ADD COLUMN contact_leg_sid TEXT;
ALTER TABLE conversations ADD COLUMN contact_leg_status TEXT;
ALTER TABLE conversations ADD COLUMN contact_leg_started_at TEXT;
ALTER TABLE conversations ADD COLUMN contact_leg_answered_at TEXT;
ALTER TABLE conversations ADD COLUMN contact_leg_ended_at TEXT;
ALTER TABLE conversations ADD COLUMN contact_leg_duration_secs BIGINT;
