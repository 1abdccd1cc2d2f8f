-- Idempotency records that survive a crash, and keep no secret in the clear.
--
-- `claim` names the request that holds the key. The handler's own transaction sets `applied_at`,
-- fenced on its claim, so the record knows whether the request's effect committed:
-- - not applied and abandoned (its process died before committing): a retry takes the claim
--   over (a new `claim`) and acts; the old request, should it still be running, is refused at
--   its fence and acts not at all;
-- - applied but without a response (its process died after committing): a retry is told so,
--   and nothing acts twice.
--
-- `sealed_body` replaces `body`: a response can carry a secret (a new API key's), so it is kept
-- sealed with the encryption keyring like every other secret. Kept responses from before this
-- migration are dropped with the column; their keys still refuse to act again.
ALTER TABLE idempotency_keys
    ADD COLUMN claim       uuid        NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN applied_at  timestamptz,
    ADD COLUMN sealed_body text,
    DROP COLUMN body;

UPDATE idempotency_keys SET applied_at = created_at WHERE status IS NOT NULL;
