-- Attempts at one episode (a fingerprint on a target), counted by every replica, so
-- `max_attempts` holds fleet-wide and a replica taking over continues the count.
CREATE TABLE fleet_attempts (
    target      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    attempts    INTEGER NOT NULL CHECK (attempts >= 1),
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (target, fingerprint)
) STRICT;
