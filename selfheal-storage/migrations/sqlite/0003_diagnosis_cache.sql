-- One advisor diagnosis per fingerprint, kept until it expires, so an LLM is asked
-- once per kind of error and not once per incident.
CREATE TABLE diagnosis_cache (
    fingerprint TEXT NOT NULL PRIMARY KEY,
    diagnosis   TEXT NOT NULL,                              -- the Diagnosis as JSON
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL                               -- RFC 3339, text order is time order
) STRICT;

CREATE INDEX diagnosis_cache_expires ON diagnosis_cache (expires_at);
