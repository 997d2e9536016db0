-- 0001_init: the first schema of the metadata store.
--
-- Written in the subset SQLite and PostgreSQL share (see doc.go): times are
-- BIGINT Unix microseconds in UTC, hashes are lowercase hex TEXT, absent
-- optional values are NULL, and the only per-dialect rewrite is
-- "BIGSERIAL PRIMARY KEY" -> "INTEGER PRIMARY KEY" for SQLite.

-- releases is each channel's history: one row per release published to (or
-- promoted into) a channel for an architecture.
CREATE TABLE releases (
    channel       TEXT   NOT NULL,
    arch          TEXT   NOT NULL,
    version       TEXT   NOT NULL,
    ref           TEXT   NOT NULL,
    commit_hex    TEXT   NOT NULL,
    oci_digest    TEXT,
    published_at  BIGINT NOT NULL,
    published_by  TEXT   NOT NULL,
    promoted_from TEXT,
    PRIMARY KEY (channel, arch, version)
);

-- rollouts are staged rollouts of a release; the ramp is rollout.ParseRamp
-- text, the state a rollout.State.
CREATE TABLE rollouts (
    id          TEXT   PRIMARY KEY,
    channel     TEXT   NOT NULL,
    arch        TEXT   NOT NULL,
    version     TEXT   NOT NULL,
    ramp        TEXT   NOT NULL,
    state       TEXT   NOT NULL
        CHECK (state IN ('pending', 'active', 'paused', 'halted', 'complete')),
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    updated_at  BIGINT NOT NULL,
    stopped_at  BIGINT,
    halt_reason TEXT   NOT NULL DEFAULT '',
    created_by  TEXT   NOT NULL,
    FOREIGN KEY (channel, arch, version) REFERENCES releases (channel, arch, version)
);
-- At most one open (not yet halted or complete) rollout per channel and
-- architecture; the database enforces it so concurrent creates cannot both win.
CREATE UNIQUE INDEX rollouts_one_open ON rollouts (channel, arch)
    WHERE state IN ('pending', 'active', 'paused');
CREATE INDEX rollouts_by_channel ON rollouts (channel, arch, created_at);

-- devices are the fleet, as last seen by check-ins; group_name is the
-- admin-assigned (or device-declared) group, '' for none.
CREATE TABLE devices (
    id            TEXT   PRIMARY KEY,
    arch          TEXT   NOT NULL,
    channel       TEXT   NOT NULL,
    group_name    TEXT   NOT NULL DEFAULT '',
    booted_commit TEXT   NOT NULL DEFAULT '',
    version       TEXT   NOT NULL DEFAULT '',
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);
CREATE INDEX devices_by_channel ON devices (channel, id);
CREATE INDEX devices_by_group ON devices (group_name, id);

-- pins assign a device or a group to a channel and/or hold it on a version.
CREATE TABLE pins (
    scope      TEXT   NOT NULL CHECK (scope IN ('device', 'group')),
    target     TEXT   NOT NULL,
    channel    TEXT   NOT NULL DEFAULT '',
    version    TEXT   NOT NULL DEFAULT '',
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, target)
);

-- reports are device events; the id orders events that share a timestamp.
CREATE TABLE reports (
    id          BIGSERIAL PRIMARY KEY,
    device_id   TEXT   NOT NULL,
    rollout_id  TEXT,
    version     TEXT   NOT NULL,
    event       TEXT   NOT NULL CHECK (event IN ('download-started', 'download-finished',
                    'deployed', 'health-ok', 'rolled-back', 'failed')),
    error_text  TEXT   NOT NULL DEFAULT '',
    reported_at BIGINT NOT NULL
);
CREATE INDEX reports_by_rollout ON reports (rollout_id, reported_at);
CREATE INDEX reports_by_device ON reports (device_id, event);

-- tokens hold only the SHA-256 of each API token.
CREATE TABLE tokens (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL CHECK (role IN ('release', 'admin', 'device')),
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (name) WHERE revoked_at IS NULL;

-- audit_log is append-only and hash-chained (see audit.go).
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    subject   TEXT   NOT NULL,
    detail    TEXT   NOT NULL,
    logged_at BIGINT NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);
