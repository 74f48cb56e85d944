-- A pattern whose text has more than one cause: the target's probe decides which
-- pattern explains the incident (Pattern::ambiguous).
ALTER TABLE patterns ADD COLUMN ambiguous boolean NOT NULL DEFAULT false;
