"""The shared counters (`runtime.COUNTERS`) the purge and erasures add to, for `/metrics`:
`callwatch_purged_total{kind}` and `callwatch_erased_calls_total`."""

PURGED = "purged|"  # + the kind (purge.Purged's fields)
ERASED_CALLS = "erased_calls"
