-- A worker table that will not be attached: of a load that failed, or left over from one that crashed.
-- IF EXISTS: a table attached meanwhile was renamed to its partition name and is not touched.
DROP TABLE IF EXISTS market.{worker_table};
