-- Incidents keep the stack signature of their fingerprint; fleet coordination gets
-- what it shares (who set a cooldown, rate-limit permits); operators get views.

ALTER TABLE incidents ADD COLUMN stack text;

-- Who started a cooldown: another replica's fix is not a repeat of this one's.
ALTER TABLE cooldowns ADD COLUMN holder text;

-- One row per action admitted by the global rate limit (kept for an hour).
CREATE TABLE rate_permits (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    granted_at timestamptz NOT NULL,
    holder     text        NOT NULL
);

CREATE INDEX rate_permits_granted_at ON rate_permits (granted_at);

-- Healing overview: every incident with its pattern, fingerprint, status and last action.
CREATE VIEW healing_overview AS
SELECT i.seq, i.id AS incident, i.target, i.pattern, i.fingerprint, i.template, i.status,
       i.opened_at, i.closed_at,
       a.id AS last_action, a.strategy AS last_strategy, a.status AS last_action_status,
       a.started_at AS last_action_at
FROM incidents i
LEFT JOIN LATERAL (
    SELECT a2.id, a2.strategy, a2.status, a2.started_at FROM actions a2
    WHERE a2.incident = i.id ORDER BY a2.started_at DESC, a2.seq ASC LIMIT 1) a ON true;

-- Recent activity: the audit trail of the last 24 hours.
CREATE VIEW recent_activity AS
SELECT seq, at, event_type, actor, incident, pattern, confidence, action, result
FROM audit_log
WHERE at >= now() - interval '24 hours';

-- Incidents and occurrences per pattern and hour (UTC), last 24 hours.
CREATE VIEW pattern_hourly AS
SELECT pattern, date_trunc('hour', opened_at, 'UTC') AS hour,
       COUNT(*) AS incidents, SUM(occurrences)::bigint AS occurrences
FROM incidents
WHERE pattern IS NOT NULL AND opened_at >= now() - interval '24 hours'
GROUP BY pattern, hour;

-- Finished actions per pattern and strategy, with the success rate.
CREATE VIEW strategy_success AS
SELECT pattern, strategy,
       COUNT(*) FILTER (WHERE status = 'succeeded') AS successes,
       COUNT(*) FILTER (WHERE status IN ('failed', 'rolled_back')) AS failures,
       COUNT(*) FILTER (WHERE status = 'succeeded')::double precision
           / NULLIF(COUNT(*) FILTER (WHERE status IN ('succeeded', 'failed', 'rolled_back')), 0)
           AS success_rate
FROM actions
WHERE pattern IS NOT NULL
GROUP BY pattern, strategy;

-- Mean time to recover per pattern, over resolved incidents, in milliseconds.
CREATE VIEW pattern_mttr AS
SELECT pattern, COUNT(*) AS resolved,
       (AVG(EXTRACT(EPOCH FROM (closed_at - opened_at))) * 1000)::double precision AS mttr_ms
FROM incidents
WHERE pattern IS NOT NULL AND status = 'resolved' AND closed_at IS NOT NULL
GROUP BY pattern;

-- Actions per pattern by outcome.
CREATE VIEW actions_by_outcome AS
SELECT pattern, status, COUNT(*) AS actions
FROM actions
WHERE pattern IS NOT NULL
GROUP BY pattern, status;
