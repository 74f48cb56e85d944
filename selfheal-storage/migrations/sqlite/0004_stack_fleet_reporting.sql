-- Placeholder, filled below.
ALTER TABLE incidents ADD COLUMN stack TEXT;
