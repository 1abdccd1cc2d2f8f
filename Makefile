# The two commands a newcomer needs are the first two targets: `make dev` and `make test`.
# Neither needs DATABASE_URL: without it they start a private PostgreSQL from the system's
# server binaries (data under .herald/ for dev, a throwaway one under target/ for tests).

CARGO ?= cargo
HERALD := target/debug/herald
RELEASE_HERALD := target/release/herald
TEST_PG := target/test-postgres

.PHONY: dev test build lint fmt sqlx-prepare docs-assets fuzz bench-ingest bench-queue bench-api bench-publish bench-media bench-webhooks chaos

## Build and run herald (api + scheduler + worker) on http://127.0.0.1:8080; Ctrl-C stops it.
dev:
	$(CARGO) build --bin herald
	$(HERALD) dev

## The whole test suite against a fresh private PostgreSQL (or DATABASE_URL when set).
test:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --fresh --dir $(TEST_PG) -- $(CARGO) test --workspace

build:
	$(CARGO) build --release --bin herald

## Contract fuzz (not part of `make test`): schemathesis, pinned and installed into target/fuzz-venv,
## against a herald on a free port of 127.0.0.1 and a throwaway PostgreSQL, with some data to act
## on; every answer must be declared by /v1/openapi.json. Stops herald and PostgreSQL when done.
## FUZZ_MAX_EXAMPLES (per operation and phase, default 350), FUZZ_SEED and FUZZ_MIN_CASES (10,000) adjust it.
fuzz:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --fresh --dir target/fuzz-postgres -- tests/fuzz/run.sh

## Event log ingest (issue: event log): 1/8/64 writers vs pgbench single-row INSERT, fsync on.
bench-ingest:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --durable --fresh --dir target/bench-postgres -- $(CARGO) bench --bench ingest

## Job queue (issue: queue): bulk enqueue, drain of 100k and of a 1M backlog, pickup latency.
bench-queue:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --durable --fresh --dir target/bench-postgres -- $(CARGO) bench --bench queue

## The api's edge (issue: API edge): authenticated GET and a no-op POST at 64 connections.
bench-api:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --durable --fresh --dir target/bench-postgres -- $(CARGO) bench --bench api

## Publishing (issue: posts): 100k one-target posts due at one instant, one worker process, a
## fake platform answering in 50 ms. BENCH_PUBLISH_POSTS and BENCH_PUBLISH_CONCURRENCY adjust it.
## Then 1,000 posts with a 5 MB image through the X adapter and a fake X: deliveries/s and the
## worker's peak RSS. BENCH_PUBLISH_MEDIA_POSTS and BENCH_PUBLISH_MEDIA_CONCURRENCY adjust it.
bench-publish:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --durable --fresh --dir target/bench-postgres -- $(CARGO) bench --bench publish

## Media (issue: media): a 200 MB video uploaded through the api and read back through its signed
## URL, on the local store; MB/s each way and the api's peak resident memory growth.
## BENCH_MEDIA_MB adjusts the size.
bench-media:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --durable --fresh --dir target/bench-postgres -- $(CARGO) bench --bench media

## Webhooks (issue: webhooks): 20,000 events to 10 endpoints on a receiver answering in 20 ms,
## one worker and one scheduler process: messages/s, commit-to-receiver latency under capacity
## (p50, p99) and the worker's peak RSS. BENCH_WEBHOOKS_IN_FLIGHT sets each endpoint's max_in_flight.
bench-webhooks:
	$(CARGO) build --bin herald
	$(HERALD) with-postgres --durable --fresh --dir target/bench-postgres -- $(CARGO) bench --bench webhooks

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate .sqlx/ (the compile-time query data) against a freshly migrated private database.
## Any earlier build of herald can start that database, so a new query never blocks this step.
sqlx-prepare:
	test -x $(HERALD) || $(CARGO) build --bin herald
	$(HERALD) with-postgres --fresh --dir target/sqlx-postgres -- sh -c '\
	  set -e; for migration in migrations/*.sql; do psql -q -v ON_ERROR_STOP=1 "$$DATABASE_URL" -f $$migration; done; \
	  rm -rf .sqlx && mkdir .sqlx; \
	  touch shared/src/lib.rs api/src/lib.rs worker/src/lib.rs scheduler/src/lib.rs src/main.rs tests/it/main.rs; \
	  SQLX_OFFLINE=false SQLX_OFFLINE_DIR=$(CURDIR)/.sqlx $(CARGO) check --workspace --all-targets'

## Crash-safety under fire (issue: operate at scale): one api, two schedulers, three workers as
## processes on a private PostgreSQL; 10,000 posts due over a minute while workers are SIGKILLed,
## a scheduler is killed and PostgreSQL restarts with -m immediate. CHAOS_POSTS adjusts it.
CHAOS_PG := target/chaos-postgres
chaos:
	$(CARGO) build --bin herald
	CHAOS_POSTGRES_DIR=$(CHAOS_PG) $(HERALD) with-postgres --durable --fresh --dir $(CHAOS_PG) -- $(CARGO) bench --bench chaos

## The reference page's renderer, served from the binary: fetch SCALAR_VERSION of
## @scalar/api-reference from npm into api/assets/scalar (then rebuild and commit it).
SCALAR_VERSION ?= $(shell cat api/assets/scalar/VERSION)
docs-assets:
	rm -rf target/scalar && mkdir -p target/scalar
	cd target/scalar && npm pack --silent @scalar/api-reference@$(SCALAR_VERSION) && tar xzf scalar-api-reference-*.tgz
	cp target/scalar/package/dist/browser/standalone.js api/assets/scalar/standalone.js
	node -p 'require("./target/scalar/package/package.json").version' > api/assets/scalar/VERSION
