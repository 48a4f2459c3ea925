-- Reports (DESIGN §12) read rollups, not the raw timeline: counters per
-- flow, version, step, UTC day and outcome, kept by the runtime in the
-- same transaction as the writes they count (server/src/runtime/rollups.rs
-- says what each metric counts). `step` is '' for counts about the flow
-- as a whole; `day` is days since 1970-01-01 (UTC); `machine` is 1 for
-- opens by mail-privacy proxies and clicks by link scanners.
CREATE TABLE flow_rollups (
    flow_id INTEGER NOT NULL,
    day     INTEGER NOT NULL,
    version INTEGER NOT NULL,
    step    TEXT    NOT NULL,
    metric  TEXT    NOT NULL,
    machine INTEGER NOT NULL DEFAULT 0,
    count   INTEGER NOT NULL,
    PRIMARY KEY (flow_id, day, version, step, metric, machine)
);
-- The home dashboard's figures of the day, across flows.
CREATE INDEX flow_rollups_day ON flow_rollups (day, metric);

-- What the runtime did before rollups were kept, counted once from the
-- raw records (the same definitions as runtime/rollups.rs), so that an
-- installation's reports and canvas counts go on where they were.
INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
SELECT p.flow_id, CAST(unixepoch(coalesce(a.done_at, a.due_at)) / 86400 AS INTEGER), p.version, a.step, 'reached', 0, count(*)
FROM participant_actions a JOIN participants p ON p.id = a.participant_id
GROUP BY p.flow_id, CAST(unixepoch(coalesce(a.done_at, a.due_at)) / 86400 AS INTEGER), p.version, a.step;

INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
SELECT p.flow_id, CAST(unixepoch(a.done_at) / 86400 AS INTEGER), p.version, a.step, CASE WHEN a.outcome = 'failed' THEN 'step_failed' ELSE 'passed' END, 0, count(*)
FROM participant_actions a JOIN participants p ON p.id = a.participant_id
WHERE a.outcome IN ('completed', 'skipped', 'failed') AND a.done_at IS NOT NULL
GROUP BY p.flow_id, CAST(unixepoch(a.done_at) / 86400 AS INTEGER), p.version, a.step, CASE WHEN a.outcome = 'failed' THEN 'step_failed' ELSE 'passed' END;

INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
SELECT p.flow_id, CAST(unixepoch(a.done_at) / 86400 AS INTEGER), p.version, a.step, 'delivered', 0, count(*)
FROM participant_actions a JOIN participants p ON p.id = a.participant_id
WHERE a.outcome = 'completed' AND a.kind IN ('send_email', 'send_sms') AND a.done_at IS NOT NULL
GROUP BY p.flow_id, CAST(unixepoch(a.done_at) / 86400 AS INTEGER), p.version, a.step;

INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
SELECT p.flow_id, CAST(unixepoch(o.created_at) / 86400 AS INTEGER), p.version, o.step, 'sent', 0, count(*)
FROM outbox o JOIN participants p ON p.id = o.participant_id
WHERE o.kind IN ('email', 'sms')
GROUP BY p.flow_id, CAST(unixepoch(o.created_at) / 86400 AS INTEGER), p.version, o.step;

INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
SELECT flow_id, CAST(unixepoch(enrolled_at) / 86400 AS INTEGER), version, '', 'entered', 0, count(*)
FROM participants WHERE step IS NOT NULL
GROUP BY flow_id, CAST(unixepoch(enrolled_at) / 86400 AS INTEGER), version;

INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
SELECT flow_id, CAST(unixepoch(updated_at) / 86400 AS INTEGER), version, coalesce(step, ''), status, 0, count(*)
FROM participants WHERE status IN ('completed', 'converted', 'exited', 'failed')
GROUP BY flow_id, CAST(unixepoch(updated_at) / 86400 AS INTEGER), version, coalesce(step, ''), status;

-- A message's first open (click, reply...) per participant is what the
-- rollups count: earlier events of the same participant, step and kind
-- are looked up here.
CREATE INDEX contact_events_participant ON contact_events (participant_id, step, kind) WHERE participant_id IS NOT NULL;

-- A split's automatic winner (FLOW_FORMAT split `winner`): the decision,
-- the figures it was made on (JSON), and a person's override.
CREATE TABLE split_decisions (
    flow_id    INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    step       TEXT    NOT NULL,
    port       TEXT    NOT NULL,   -- the branch everyone arriving later takes
    decided_at TEXT    NOT NULL,
    figures    TEXT    NOT NULL,   -- JSON: metric, per branch, p-value
    overridden_by TEXT,            -- the user who chose the branch by hand
    PRIMARY KEY (flow_id, version, step)
);
