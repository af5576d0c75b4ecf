-- Back to the server's join choices for refresh_daily.sql and refresh_weekly.sql, which may recompute
-- the whole history (after a first load or a rebuild).
SET LOCAL enable_hashjoin TO DEFAULT;
SET LOCAL enable_mergejoin TO DEFAULT;
