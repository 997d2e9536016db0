-- 0006_cache_changes: a feed of changes to what servers cache per process
-- (pins, rollouts, releases, device groups), so that every replica on the
-- same database applies a change made through another one within a
-- second or two (internal/changefeed). One row per change, written in the
-- transaction that makes it, with the writer's time; rows older than an
-- hour are pruned.
CREATE TABLE cache_changes (
    seq        BIGSERIAL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX cache_changes_by_time ON cache_changes (changed_at);
