-- 'v' when the daily rollup is a TimescaleDB continuous aggregate, 'r' when it is a portable table.
SELECT relkind FROM pg_class WHERE oid = 'market.prices_daily'::regclass;
