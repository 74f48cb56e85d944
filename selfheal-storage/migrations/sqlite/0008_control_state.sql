-- Operator and safety state shared by replicas and kept across restarts: silences,
-- dry-run switches, the breaker and back-off (ControlStore), as JSON documents by key.
CREATE TABLE control_state (
    key        TEXT NOT NULL PRIMARY KEY,
    value      TEXT NOT NULL,                               -- the document as JSON
    updated_at TEXT NOT NULL                                -- RFC 3339
) STRICT;
