"""Orgs, their API keys and sources (tenancy), and the endpoints that manage them."""
