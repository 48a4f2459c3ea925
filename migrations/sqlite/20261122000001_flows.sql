-- Flows and their versions. A flow has one editable draft (with a revision
-- number for optimistic concurrency) and any number of published versions,
-- which never change once written.

CREATE TABLE flows (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Unique regardless of ASCII case: go_to_flow steps may name a flow.
    name          TEXT    NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
    -- The draft, as canonical waymark.flow/v1 JSON.
    draft         TEXT    NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 1,
    -- What the validator said when the draft was last saved.
    error_count   INTEGER NOT NULL DEFAULT 0,
    warning_count INTEGER NOT NULL DEFAULT 0,
    -- The flows the draft's go_to_flow steps name (JSON array), for the
    -- recursion check across flows without reading every draft.
    goes_to       TEXT    NOT NULL DEFAULT '[]',
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);

CREATE TABLE flow_versions (
    flow_id      INTEGER NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    number       INTEGER NOT NULL CHECK (number > 0),
    document     TEXT    NOT NULL,
    published_at TEXT    NOT NULL,
    published_by TEXT    NOT NULL,
    PRIMARY KEY (flow_id, number)
);

-- Published versions are immutable: participants are pinned to them.
CREATE TRIGGER flow_versions_are_immutable
BEFORE UPDATE ON flow_versions
BEGIN
    SELECT RAISE(ABORT, 'published flow versions cannot be changed');
END;

-- One-off facts about this installation, such as whether the demo flow
-- was seeded (so deleting it does not bring it back on the next start).
CREATE TABLE installation (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
