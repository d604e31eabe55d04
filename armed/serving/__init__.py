"""Serving glue that knows no Ray at import time: GPU profiles, the Serve config builder, the CLI commands.

Ray itself is only imported inside the functions that need a running cluster, so `armed serve-config` and
profile validation work on a machine without Ray started (and in the Helm chart's CI).
"""
