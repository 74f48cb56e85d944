-- Approvals are decided once, in the store, by any replica (ControlStore::decide_approval):
-- when and with what note (a rejection's reason, why it expired).
ALTER TABLE approvals ADD COLUMN decided_at TEXT;   -- RFC 3339
ALTER TABLE approvals ADD COLUMN note TEXT;
