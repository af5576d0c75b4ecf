-- One catalog entry into backtest.strategies; an unchanged entry is left alone.
INSERT INTO backtest.strategies AS s (strategy_id, name, description, parameters, definition_hash)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (strategy_id) DO UPDATE
    SET name = excluded.name, description = excluded.description, parameters = excluded.parameters,
        definition_hash = excluded.definition_hash, updated_at = now()
    WHERE (s.name, s.description, s.parameters, s.definition_hash)
          IS DISTINCT FROM (excluded.name, excluded.description, excluded.parameters, excluded.definition_hash);
