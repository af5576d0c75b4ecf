-- First start of the TimescaleDB container only (docker-entrypoint-initdb.d): the Dagster instance's own
-- database beside the warehouse. From template0: template1 carries the timescaledb extension, which the
-- instance's tables do not need (its background workers would visit this database for nothing).
CREATE DATABASE dagster TEMPLATE template0;
