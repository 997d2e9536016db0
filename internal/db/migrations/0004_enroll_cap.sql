-- 0004_enroll_cap: an enroll token's cap on the devices it may enroll
-- (mxosctl token create --role enroll --max-devices N). NULL: the
-- server's default (server.EnrollCap); only enroll tokens carry one.
ALTER TABLE tokens ADD COLUMN max_devices BIGINT;
