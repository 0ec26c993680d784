"""Vapi: webhook adapter, auth, the call object, details."""
