-- The audit chain's head (position and hash of the newest record), kept outside
-- audit_log so that removing records from its end, or all of them, is noticed: the
-- table alone cannot tell a truncated log from a short one. Written in the same
-- transaction as each record; the trigger lets it only move forward. Grant the role
-- that appends INSERT and UPDATE here, and keep trigger changes to another role.
CREATE TABLE audit_checkpoint (
    id   boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint  NOT NULL CHECK (seq >= 1),
    hash text    NOT NULL
);

INSERT INTO audit_checkpoint (id, seq, hash)
    SELECT true, seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1;

CREATE FUNCTION audit_checkpoint_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_checkpoint only moves forward: it cannot be moved back or deleted'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER audit_checkpoint_forward BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_forward_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_forward_only();
