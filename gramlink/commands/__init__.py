"""Subcommands of ``gramlink``: one module each, found at start-up.

A module here defines ``register(subparsers)``, which adds its parser and sets
``func`` (taking the parsed namespace, returning an exit code) as a default.
"""
