"""Partitions more than one domain uses."""

import dagster as dg

# One partition per crypto symbol, kept in step with market.cryptos by the `market/cryptos` asset.
crypto_partitions = dg.DynamicPartitionsDefinition(name="cryptos")
