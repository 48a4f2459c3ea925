-- The claims read only what they may take.
--
-- participants_due held every participant with a next run, including the
-- paused, suppressed and cancelled ones, which keep theirs: the claim walked
-- past every one of them whose time had come before reaching a ready one, on
-- every pass. It now holds the claimable statuses only, as the claim, the
-- lease release and the due metric ask for them (the same IN list, so both
-- engines see that the index answers the query).
DROP INDEX participants_due;
CREATE INDEX participants_due ON participants (next_run_at)
    WHERE status IN ('ready', 'waiting', 'held') AND next_run_at IS NOT NULL;

-- The outbox claim takes the oldest queued entries (ORDER BY id). With
-- only outbox_due (by next attempt), PostgreSQL walked the primary key past
-- every sent entry (870 ms a claim with 1,000,000 sent; 0.3 ms with this
-- index) and SQLite sorted every due entry before taking the first 100.
CREATE INDEX outbox_queued ON outbox (id) WHERE status = 'queued';

-- A contact is rewritten whenever a flow changes one of its fields. On
-- full pages (a bulk import leaves them full) every such write is a new
-- row version elsewhere, entered in each of the table's indexes, the
-- lower(email) one at a random leaf: among 10,000,000 contacts that made
-- updating 500 of them 2-6x as slow as among 100,000. Room left on each page
-- keeps most of these writes on their page (HOT: no index entries). Pages
-- written from now on keep it; existing ones gain it as their rows move.
ALTER TABLE contacts SET (fillfactor = 60);
