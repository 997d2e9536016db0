-- 0003_device_identity: device identity, token expiry, report classes.
--
-- SQLite cannot change a CHECK constraint in place, so tokens and reports
-- are rebuilt (create the new table, copy, drop, rename), which both
-- engines run alike. Report ids are renumbered in their old order: they
-- only break ties between reports with the same timestamp.

-- tokens gain the enroll role, the device a device token is bound to
-- (NULL until given at creation or bound by its first check) and an
-- expiry (NULL: tokens made before expiry existed never expire).
CREATE TABLE tokens_v3 (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL CHECK (role IN ('release', 'admin', 'device', 'enroll')),
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    revoked_at BIGINT,
    device_id  TEXT,
    expires_at BIGINT
);
INSERT INTO tokens_v3 (id, name, role, hash, created_at, created_by, revoked_at)
    SELECT id, name, role, hash, created_at, created_by, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v3 RENAME TO tokens;
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE INDEX tokens_by_device ON tokens (device_id);

-- reports gain the report classes (health-failed, boot-failed count toward
-- auto-halt with rolled-back; refused, download-failed, config-error and
-- the older agents' failed never do) and the device's sequence number.
CREATE TABLE reports_v3 (
    id          BIGSERIAL PRIMARY KEY,
    device_id   TEXT   NOT NULL,
    rollout_id  TEXT,
    version     TEXT   NOT NULL,
    event       TEXT   NOT NULL CHECK (event IN ('download-started', 'download-finished',
                    'deployed', 'health-ok', 'rolled-back', 'failed', 'health-failed',
                    'boot-failed', 'refused', 'download-failed', 'config-error')),
    error_text  TEXT   NOT NULL DEFAULT '',
    reported_at BIGINT NOT NULL,
    seq         BIGINT NOT NULL DEFAULT 0
);
INSERT INTO reports_v3 (device_id, rollout_id, version, event, error_text, reported_at)
    SELECT device_id, rollout_id, version, event, error_text, reported_at FROM reports ORDER BY id;
DROP TABLE reports;
ALTER TABLE reports_v3 RENAME TO reports;
CREATE INDEX reports_by_rollout ON reports (rollout_id, reported_at);
CREATE INDEX reports_by_device ON reports (device_id, event);

-- report_seq is the highest report sequence number accepted from the
-- device: a report must carry a larger one, so a replay is refused.
ALTER TABLE devices ADD COLUMN report_seq BIGINT NOT NULL DEFAULT 0;

-- device_identities is the admins' say over device ids: authorized (may
-- enroll, once), enrolled (holds a credential from an enroll token) or
-- revoked (its credentials are revoked; it may not enroll again until an
-- admin authorizes it).
CREATE TABLE device_identities (
    device_id  TEXT   PRIMARY KEY,
    state      TEXT   NOT NULL CHECK (state IN ('authorized', 'enrolled', 'revoked')),
    updated_at BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);
