"""The `callwatch` command: its subcommands, `up` and the demo, embedded Redis, the
terminal client.
"""
