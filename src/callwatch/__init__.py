"""callwatch: receives voice-AI and telephony webhooks and keeps one record per call.

The packages are the rooms (docs/design.md §1 draws the pipeline). Layers, lowest first: a
module imports only from its own layer and those below it, and no two modules import each other,
directly or around a loop (tests/test_layers.py checks both).

1. errors ids settings logs tracing crypto signatures validation probe queue ratelimits db tables
   migrate — the base (tracing: OpenTelemetry spans, which every layer may start; ratelimits:
   token buckets in Redis, shared by every process)
2. model — the call as data: events, the record, endings, per-call metrics
3. outbound runtime ratelimits — the SSRF guard and guarded HTTP client; one process's
   resources; token buckets in Redis
4. providers — one adapter per platform: verify, parse, fetch details
5. orgs simulator — tenancy (orgs, keys, sources); fake platforms for demos and tests
6. intake — webhooks in, stored in the inbox
7. calls recordings — events folded into calls, correlated and assembled into records; their
   recordings archived into the org's store
8. downstream — subscriptions, signed deliveries, ops streams
9. query retention — the read side: filters, lists, stats, export; what is kept and for how
   long: the retention purge, deletion and erasure
10. alerts — rules and their firing
11. pipeline — the worker's steps, the sweeper, quarantine and replay
12. observability web — what `/metrics` reads; the HTTP edge's plumbing
13. endpoints dashboard — each package's `endpoints` module: its routes with their OpenAPI
    operations; the dashboard's pages, at the same edge
14. app cli __main__ — the composition roots: the web process and the command line
"""
