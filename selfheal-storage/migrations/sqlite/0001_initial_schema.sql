-- selfheal schema, SQLite dialect. Keep it in step with ../postgres/.
--
-- Conventions:
--   * timestamps are UTC RFC 3339 text with exactly six fractional digits
--     (`2025-11-25T09:21:00.123456Z`), so text order is time order;
--   * ids are hyphenated UUID text;
--   * enums are their snake_case names (`awaiting_approval`);
--   * columns marked JSON hold serde_json text;
--   * durations are whole nanoseconds.

-- Known failures: how to recognise them.
CREATE TABLE patterns (
    name            TEXT    NOT NULL PRIMARY KEY,
    description     TEXT    NOT NULL DEFAULT '',
    regex           TEXT,
    keywords        TEXT    NOT NULL DEFAULT '[]',           -- JSON array of strings
    error_type      TEXT,
    target          TEXT,
    severity        TEXT    NOT NULL DEFAULT 'medium',
    root_cause      TEXT    NOT NULL DEFAULT '',
    auto_healable   INTEGER NOT NULL DEFAULT 0 CHECK (auto_healable IN (0, 1)),
    confidence      REAL    NOT NULL CHECK (confidence BETWEEN 0.0 AND 1.0),
    mode            TEXT    NOT NULL DEFAULT 'alert_only',
    min_occurrences INTEGER NOT NULL CHECK (min_occurrences >= 1),
    window_ns       INTEGER NOT NULL CHECK (window_ns >= 0),
    use_count       INTEGER NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
) STRICT;

-- How to fix them: one row per fix, in the pattern's order.
CREATE TABLE pattern_fixes (
    pattern           TEXT    NOT NULL REFERENCES patterns (name) ON DELETE CASCADE ON UPDATE CASCADE,
    position          INTEGER NOT NULL,                     -- order within the pattern, from 0
    strategy          TEXT    NOT NULL,
    params            TEXT    NOT NULL DEFAULT 'null',      -- JSON
    priority          INTEGER NOT NULL DEFAULT 0,
    requires_approval INTEGER NOT NULL DEFAULT 0 CHECK (requires_approval IN (0, 1)),
    successes         INTEGER NOT NULL DEFAULT 0 CHECK (successes >= 0),
    failures          INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_applied_at   TEXT,
    PRIMARY KEY (pattern, position)
) STRICT;

CREATE INDEX pattern_fixes_strategy ON pattern_fixes (strategy);

-- Every fingerprint seen, with one sample message.
CREATE TABLE fingerprints (
    id         TEXT    NOT NULL PRIMARY KEY,
    template   TEXT    NOT NULL,
    stack      TEXT,
    version    INTEGER NOT NULL,
    sample     TEXT    NOT NULL,
    first_seen TEXT    NOT NULL,
    last_seen  TEXT    NOT NULL,
    count      INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1)
) STRICT;

CREATE INDEX fingerprints_last_seen ON fingerprints (last_seen);

CREATE TABLE incidents (
    id          TEXT    NOT NULL PRIMARY KEY,
    target      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    template    TEXT    NOT NULL,
    related     TEXT    NOT NULL DEFAULT '[]',              -- JSON array of fingerprint ids
    pattern     TEXT,
    status      TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    occurrences INTEGER NOT NULL DEFAULT 0 CHECK (occurrences >= 0),
    samples     TEXT    NOT NULL DEFAULT '[]',              -- JSON array: the error log lines
    metrics     TEXT,                                       -- JSON metrics snapshot (reserved)
    opened_at   TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL,
    closed_at   TEXT,
    reason      TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX incidents_opened_at ON incidents (opened_at);
CREATE INDEX incidents_target ON incidents (target, opened_at);
CREATE INDEX incidents_status ON incidents (status, opened_at);

-- Remediation attempts. The outcome columns are all NULL until the action ran.
CREATE TABLE actions (
    id            TEXT    NOT NULL PRIMARY KEY,
    incident      TEXT    NOT NULL,
    pattern       TEXT,
    strategy      TEXT    NOT NULL,
    target        TEXT    NOT NULL,
    preview       TEXT    NOT NULL,                         -- command preview
    status        TEXT    NOT NULL,
    success       INTEGER CHECK (success IN (0, 1)),
    exit_code     INTEGER,
    stdout        TEXT,
    stderr        TEXT,
    duration_ns   INTEGER,
    health_before INTEGER CHECK (health_before BETWEEN 0 AND 100),
    health_after  INTEGER CHECK (health_after BETWEEN 0 AND 100),
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    error         TEXT
) STRICT;

CREATE INDEX actions_incident ON actions (incident, started_at);
CREATE INDEX actions_started_at ON actions (started_at);

CREATE TABLE approvals (
    id           TEXT    NOT NULL PRIMARY KEY,
    incident     TEXT    NOT NULL,
    pattern      TEXT,
    plan         TEXT    NOT NULL,                          -- JSON RemediationPlan
    reason       TEXT    NOT NULL,
    confidence   REAL    NOT NULL,
    requested_at TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    decided_by   TEXT
) STRICT;

CREATE INDEX approvals_state ON approvals (state, requested_at);
CREATE INDEX approvals_incident ON approvals (incident);

-- The hash-chained audit trail. `seq` is the primary key, so a second record with the
-- same position is refused; the triggers refuse every UPDATE and DELETE.
CREATE TABLE audit_log (
    seq        INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
    at         TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    incident   TEXT,
    pattern    TEXT,
    confidence REAL,
    action     TEXT,
    result     TEXT    NOT NULL,
    controls   TEXT    NOT NULL,                            -- JSON array: NIST controls
    detail     TEXT    NOT NULL,                            -- JSON
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_log_incident ON audit_log (incident);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be changed');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: records cannot be deleted');
END;

-- Copies taken before a strategy changes something (used by later issues).
CREATE TABLE backups (
    id          TEXT    NOT NULL PRIMARY KEY,
    incident    TEXT,
    action      TEXT,
    target      TEXT    NOT NULL,
    location    TEXT    NOT NULL,                           -- what was copied: a path, a key
    content     BLOB    NOT NULL,
    created_at  TEXT    NOT NULL,
    restored_at TEXT
) STRICT;

CREATE INDEX backups_target ON backups (target, created_at);

-- One action at a time per target, fleet-wide (used by later issues).
CREATE TABLE leases (
    target      TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    acquired_at TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL
) STRICT;

-- Cooldowns per (strategy, target), shared by replicas (used by later issues).
CREATE TABLE cooldowns (
    strategy   TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    expires_at TEXT    NOT NULL,
    strikes    INTEGER NOT NULL DEFAULT 0,                  -- returns after "successful" fixes, for backoff
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (strategy, target)
) STRICT;
