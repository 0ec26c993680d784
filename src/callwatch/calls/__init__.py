"""The stored call: events folded into a call, correlation of legs, assembly into a
record, the store.
"""
