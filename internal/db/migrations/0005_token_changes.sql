-- 0005_token_changes: a feed of changes to live tokens, so that servers
-- holding device credentials in memory follow revocations and shortened
-- lives made by other processes (another replica, `mxos-server token
-- revoke`). One row per token revoked or whose expiry was cut, with the
-- writer's time; rows older than an hour are pruned.
CREATE TABLE token_changes (
    seq        BIGSERIAL PRIMARY KEY,
    hash       TEXT   NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX token_changes_by_time ON token_changes (changed_at);
