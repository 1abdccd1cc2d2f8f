"""schemathesis hooks for `make fuzz`.

The fuzzer draws `Idempotency-Key` values from a small space ("0", "00", ...), so a later case
with another body met the first one's key and got a 409 `idempotency_conflict` without reaching
its handler. A key the document calls valid is made unique per request here; invalid ones
(empty, too long, other characters) are sent as generated, and must still be refused.
"""

import re
import uuid

import schemathesis

VALID = re.compile(r"^[\t -~]+$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and VALID.match(value) and len(value) <= 255:
            headers[name] = f"{value[:200]}.{uuid.uuid4().hex}"
