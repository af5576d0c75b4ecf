-- One year of market.prices. {partition}, {year_start} and {next_year_start} are filled in as SQL literals.
CREATE TABLE IF NOT EXISTS market.{partition} PARTITION OF market.prices
    FOR VALUES FROM ({year_start}) TO ({next_year_start});
