-- One advisor diagnosis per fingerprint, kept until it expires, so an LLM is asked
-- once per kind of error and not once per incident.
CREATE TABLE diagnosis_cache (
    fingerprint text        NOT NULL PRIMARY KEY,
    diagnosis   jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX diagnosis_cache_expires ON diagnosis_cache (expires_at);
