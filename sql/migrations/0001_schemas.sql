-- The three schemas of the warehouse: raw and rolled-up market data, serving views, backtest results.
CREATE SCHEMA IF NOT EXISTS market;
CREATE SCHEMA IF NOT EXISTS serving;
CREATE SCHEMA IF NOT EXISTS backtest;
