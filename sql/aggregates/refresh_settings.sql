-- Settings of a portable refresh's transaction.
-- Rollups and the log entries they consumed commit together: a commit lost in a crash loses both and the
-- next refresh redoes them, so there is no need to wait for the WAL flush.
SET LOCAL synchronous_commit = off;
-- JIT compiling costs more than these statements run (DESIGN.md pitfalls).
SET LOCAL jit = off;
-- consume_and_merge_appends.sql joins a few hundred new rows to large tables: nested loops probing their
-- indexes are right at any size, while the planner's estimates for bars past the statistics are not.
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off;
