-- Approvals are decided once, in the store, by any replica (ControlStore::decide_approval):
-- when and with what note (a rejection's reason, why it expired). A decision is announced
-- with NOTIFY selfheal_approval_decided, payload the approval id.
ALTER TABLE approvals ADD COLUMN decided_at TIMESTAMPTZ;
ALTER TABLE approvals ADD COLUMN note TEXT;
