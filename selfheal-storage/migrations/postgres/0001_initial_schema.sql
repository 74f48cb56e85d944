-- selfheal schema, PostgreSQL dialect. Keep it in step with ../sqlite/, migration for
-- migration (same versions, same tables and columns), in native types:
--   * timestamps are timestamptz (microseconds), ids are uuid;
--   * enums are their snake_case names in text columns with a CHECK;
--   * JSON columns are jsonb, except the audit log's, which are json: the text is kept
--     exactly as written, so the hash chain verifies on what is stored;
--   * durations are whole nanoseconds in bigint.
-- Every table lives in the connection's schema (search_path), so one database can
-- hold several selfheal schemas.

-- Known failures: how to recognise them.
CREATE TABLE patterns (
    name            text             NOT NULL PRIMARY KEY,
    description     text             NOT NULL DEFAULT '',
    regex           text,
    keywords        jsonb            NOT NULL DEFAULT '[]',
    error_type      text,
    target          text,
    severity        text             NOT NULL DEFAULT 'medium',
    root_cause      text             NOT NULL DEFAULT '',
    auto_healable   boolean          NOT NULL DEFAULT false,
    confidence      double precision NOT NULL CHECK (confidence BETWEEN 0.0 AND 1.0),
    mode            text             NOT NULL DEFAULT 'alert_only',
    min_occurrences bigint           NOT NULL CHECK (min_occurrences >= 1),
    window_ns       bigint           NOT NULL CHECK (window_ns >= 0),
    use_count       bigint           NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    enabled         boolean          NOT NULL DEFAULT true,
    created_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL
);

-- How to fix them: one row per fix, in the pattern's order.
CREATE TABLE pattern_fixes (
    pattern           text        NOT NULL REFERENCES patterns (name) ON DELETE CASCADE ON UPDATE CASCADE,
    position          bigint      NOT NULL,
    strategy          text        NOT NULL,
    params            jsonb       NOT NULL DEFAULT 'null',
    priority          bigint      NOT NULL DEFAULT 0,
    requires_approval boolean     NOT NULL DEFAULT false,
    successes         bigint      NOT NULL DEFAULT 0 CHECK (successes >= 0),
    failures          bigint      NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_applied_at   timestamptz,
    PRIMARY KEY (pattern, position)
);

CREATE INDEX pattern_fixes_strategy ON pattern_fixes (strategy);

-- Every fingerprint seen, with one sample message.
CREATE TABLE fingerprints (
    id         text        NOT NULL PRIMARY KEY,
    template   text        NOT NULL,
    stack      text,
    version    bigint      NOT NULL,
    sample     text        NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    count      bigint      NOT NULL DEFAULT 1 CHECK (count >= 1)
);

CREATE INDEX fingerprints_last_seen ON fingerprints (last_seen);

-- `seq` orders rows saved at the same time the way SQLite's rowid does: by first insert.
CREATE TABLE incidents (
    id          uuid        NOT NULL PRIMARY KEY,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    target      text        NOT NULL,
    fingerprint text        NOT NULL,
    template    text        NOT NULL,
    related     jsonb       NOT NULL DEFAULT '[]',
    pattern     text,
    status      text        NOT NULL,
    severity    text        NOT NULL,
    occurrences bigint      NOT NULL DEFAULT 0 CHECK (occurrences >= 0),
    samples     jsonb       NOT NULL DEFAULT '[]',
    metrics     jsonb,
    opened_at   timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    closed_at   timestamptz,
    reason      text        NOT NULL DEFAULT ''
);

CREATE INDEX incidents_opened_at ON incidents (opened_at);
CREATE INDEX incidents_target ON incidents (target, opened_at);
CREATE INDEX incidents_status ON incidents (status, opened_at);

-- Remediation attempts. The outcome columns are all NULL until the action ran.
CREATE TABLE actions (
    id            uuid        NOT NULL PRIMARY KEY,
    seq           bigint      GENERATED ALWAYS AS IDENTITY,
    incident      uuid        NOT NULL,
    pattern       text,
    strategy      text        NOT NULL,
    target        text        NOT NULL,
    preview       text        NOT NULL,
    status        text        NOT NULL,
    success       boolean,
    exit_code     integer,
    stdout        text,
    stderr        text,
    duration_ns   bigint,
    health_before smallint CHECK (health_before BETWEEN 0 AND 100),
    health_after  smallint CHECK (health_after BETWEEN 0 AND 100),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    error         text
);

CREATE INDEX actions_incident ON actions (incident, started_at);
CREATE INDEX actions_started_at ON actions (started_at);

CREATE TABLE approvals (
    id           uuid             NOT NULL PRIMARY KEY,
    seq          bigint           GENERATED ALWAYS AS IDENTITY,
    incident     uuid             NOT NULL,
    pattern      text,
    plan         jsonb            NOT NULL,
    reason       text             NOT NULL,
    confidence   double precision NOT NULL,
    requested_at timestamptz      NOT NULL,
    state        text             NOT NULL,
    decided_by   text
);

CREATE INDEX approvals_state ON approvals (state, requested_at);
CREATE INDEX approvals_incident ON approvals (incident);

-- The hash-chained audit trail. `seq` is the primary key, so a second record with the
-- same position is refused; the trigger refuses every UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_log (
    seq        bigint           NOT NULL PRIMARY KEY CHECK (seq >= 1),
    at         timestamptz      NOT NULL,
    event_type text             NOT NULL,
    actor      text             NOT NULL,
    incident   uuid,
    pattern    text,
    confidence double precision,
    action     text,
    result     text             NOT NULL,
    controls   json             NOT NULL,
    detail     json             NOT NULL,
    prev_hash  text             NOT NULL,
    hash       text             NOT NULL
);

CREATE INDEX audit_log_incident ON audit_log (incident);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: records cannot be changed or deleted'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Copies taken before a strategy changes something.
CREATE TABLE backups (
    id          uuid        NOT NULL PRIMARY KEY,
    incident    uuid,
    action      uuid,
    target      text        NOT NULL,
    location    text        NOT NULL,
    content     bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    restored_at timestamptz
);

CREATE INDEX backups_target ON backups (target, created_at);

-- One action at a time per target, fleet-wide.
CREATE TABLE leases (
    target      text        NOT NULL PRIMARY KEY,
    holder      text        NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Cooldowns per (strategy, target), shared by replicas.
CREATE TABLE cooldowns (
    strategy   text        NOT NULL,
    target     text        NOT NULL,
    expires_at timestamptz NOT NULL,
    strikes    bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (strategy, target)
);
