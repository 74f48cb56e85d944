-- Attempts at one episode (a fingerprint on a target), counted by every replica, so
-- `max_attempts` holds fleet-wide and a replica taking over continues the count.
CREATE TABLE fleet_attempts (
    target      text        NOT NULL,
    fingerprint text        NOT NULL,
    attempts    bigint      NOT NULL CHECK (attempts >= 1),
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (target, fingerprint)
);
