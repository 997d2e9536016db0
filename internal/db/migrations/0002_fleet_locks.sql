-- 0002_fleet_locks: reboot slots for the fleet-lock update strategy.
--
-- A row is one device holding one of its group's slots: it may switch to a
-- new release and reboot. The slot count comes with each request (the
-- devices' max_rebooting); the rows only say who holds what until when.
-- A slot whose expires_at has passed is free: a device that died while
-- holding one does not block its group forever.
CREATE TABLE fleet_locks (
    group_name  TEXT   NOT NULL,
    device_id   TEXT   NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (group_name, device_id)
);
CREATE INDEX fleet_locks_by_device ON fleet_locks (device_id);
