-- Make a filled, indexed worker table the year's partition of market.prices, inside the load's main
-- transaction: its rows become visible with the rest of the load at commit. ATTACH takes only SHARE UPDATE
-- EXCLUSIVE on market.prices (readers and other loads go on) and, thanks to the bound CHECK, scans nothing;
-- the CHECK has done its work once the partition is attached.
ALTER TABLE market.{worker_table} RENAME TO {partition};
ALTER INDEX market.{worker_primary_key} RENAME TO {primary_key};
ALTER TABLE market.prices ATTACH PARTITION market.{partition} FOR VALUES FROM ({year_start}) TO ({next_year_start});
ALTER TABLE market.{partition} DROP CONSTRAINT {bound};
