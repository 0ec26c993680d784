"""Telnyx: webhook adapter and details."""
