-- What the rollups have yet to catch up on: count and newest entry of the invalidation log.
SELECT count(*) AS pending, max(invalidation_id) AS newest FROM market.invalidations;
