ALTER TABLE incidents ADD COLUMN stack text;
