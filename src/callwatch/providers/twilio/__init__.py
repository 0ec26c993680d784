"""Twilio: webhook adapter, the call resource, request signatures."""
