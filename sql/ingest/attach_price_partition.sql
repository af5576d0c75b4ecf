-- Index a filled new year of market.prices and attach it. ATTACH adopts the primary key as a partition of
-- prices_pkey and takes only SHARE UPDATE EXCLUSIVE on market.prices: readers and other loads go on.
-- The bound CHECK has done its work once the partition is attached.
ALTER TABLE market.{partition} ADD CONSTRAINT {primary_key} PRIMARY KEY (crypto_id, ts);
ALTER TABLE market.prices ATTACH PARTITION market.{partition} FOR VALUES FROM ({year_start}) TO ({next_year_start});
ALTER TABLE market.{partition} DROP CONSTRAINT {bound};
