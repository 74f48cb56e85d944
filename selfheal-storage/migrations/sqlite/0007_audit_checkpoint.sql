-- The audit chain's head of an SQLite database is kept in a file beside it
-- (`<database>.audit-head`, selfheal-storage/src/sqlite/checkpoint.rs), outside the
-- database an attacker with write access to it could rewrite. Nothing to create here;
-- the version keeps both dialects' migrations in step.
SELECT 1;
