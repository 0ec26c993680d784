"""The read side: call filters, lists, per-call and window stats, export, and their endpoints."""
