"""Webhooks in: the endpoint, verify/parse/group commit, the inbox and its libpq writer,
intake counts.
"""
