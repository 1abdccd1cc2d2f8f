-- Api processes cache keys in memory. Any change to a key row (a revocation, or a projection
-- rebuild that deletes and re-creates rows) tells every process to forget that key, in the
-- same transaction that makes the change, so no code path can forget to.
CREATE FUNCTION api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_api_keys', OLD.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_key_changed
    AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_key_changed();

-- TRUNCATE (a projection rebuild) fires no row triggers: forget every key.
CREATE FUNCTION api_keys_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_api_keys', '*');
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_truncated
    AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_truncated();
