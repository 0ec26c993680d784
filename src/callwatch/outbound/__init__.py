"""The one way out: the SSRF guard every fetched URL passes, and the guarded HTTP client."""
