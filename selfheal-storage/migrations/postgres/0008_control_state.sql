-- Operator and safety state shared by replicas and kept across restarts: silences,
-- dry-run switches, the breaker and back-off (ControlStore), as JSON documents by key.
CREATE TABLE control_state (
    key        text        NOT NULL PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL
);
