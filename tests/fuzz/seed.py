"""Gives the fuzz something to find: `make fuzz` runs this against a fresh herald.

Connects a sandbox account through the real OAuth flow (the sandbox's authorize page, the
callback, the worker's code exchange), creates a draft post on it, an own OAuth app and a spare
key, and writes a schemathesis configuration that sends those ids as path and query parameters
half of the time (the other half stays generated, so bad ids are fuzzed too). Without them nearly
every operation on one resource would stop at its 404.

Usage: seed.py BASE_URL KEY CONFIG_OUT
"""

import json
import sys
import time
import urllib.error
import urllib.request

base, key, config_out = sys.argv[1:4]


def call(method, path, body=None):
    request = urllib.request.Request(base + path, method=method)
    request.add_header("Authorization", f"Bearer {key}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        sys.exit(f"seed: {method} {path} answered {error.code}: {error.read().decode(errors='replace')}")


started = call("POST", "/v1/connect/sandbox", {"external_id": "fuzz"})
# Approve at once on the sandbox's authorize page; it redirects to herald's callback, which
# queues the exchange.
with urllib.request.urlopen(started["url"] + "&login=fuzz") as page:
    page.read()
session = started["session_id"]
for _ in range(100):
    view = call("GET", f"/v1/connect/sessions/{session}")
    if view["status"] != "pending":
        break
    time.sleep(0.2)
if view["status"] != "connected" or not view["account_ids"]:
    sys.exit(f"seed: the sandbox account did not connect: {view}")
accounts = view["account_ids"]

post = call("POST", "/v1/posts", {"content": "fuzz", "targets": [{"account_id": accounts[0]}], "draft": True})
app = call("POST", "/v1/apps", {"platform": "sandbox", "name": "fuzz", "client_id": "fuzz-client", "client_secret": "s"})
spare = call("POST", "/v1/keys", {"name": "spare", "scopes": ["read"]})

dictionaries = {
    "accounts": accounts,
    "posts": [post["id"]],
    "apps": [app["id"]],
    "keys": [spare["id"]],
    "sessions": [session],
    "platforms": ["sandbox", "x", "bluesky"],
}
# (path regex, method or None for all, parameter, dictionary)
bindings = [
    (r"^/v1/accounts/\{id\}", None, "path.id", "accounts"),
    (r"^/v1/posts/\{id\}", None, "path.id", "posts"),
    (r"^/v1/apps/\{id\}$", None, "path.id", "apps"),
    (r"^/v1/keys/\{id\}$", "GET", "path.id", "keys"),
    (r"^/v1/connect/sessions/\{id\}$", None, "path.id", "sessions"),
    (r"^/v1/connect/\{platform\}", None, "path.platform", "platforms"),
    (r"^/v1/posts$", "GET", "query.account_id", "accounts"),
]


def toml_string(text):
    return json.dumps(text)  # a JSON string is a TOML basic string


lines = [
    "# Written by tests/fuzz/seed.py for one `make fuzz` run.",
    "hooks = \"tests/fuzz/hooks.py\"",
    "",
    "[cache]",
    "enabled = false",
    "",
]
for name, values in dictionaries.items():
    lines += [f"[dictionaries.{name}]", "values = [" + ", ".join(toml_string(v) for v in values) + "]", ""]
for regex, method, parameter, dictionary in bindings:
    lines += ["[[operations]]", f"include-path-regex = {toml_string(regex)}"]
    if method:
        lines.append(f"include-method = {toml_string(method)}")
    binding = f"{{ dictionary = {toml_string(dictionary)}, probability = 0.5 }}"
    lines += [f"parameters = {{ {toml_string(parameter)} = {binding} }}", ""]
with open(config_out, "w") as out:
    out.write("\n".join(lines))
print(f"seed: {len(accounts)} accounts, post {post['id']}, app {app['id']}, key {spare['id']}")
