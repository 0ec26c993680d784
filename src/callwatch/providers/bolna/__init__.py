"""Bolna: webhook adapter and execution details."""
