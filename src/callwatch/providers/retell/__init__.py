"""Retell: webhook adapter, the call object, details."""
