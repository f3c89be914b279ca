"""Instrumentation: what happened (``events``) and how it reaches the sinks (``hooks``).

Its own package, below everything that emits (the pools' response hooks, resilience/, the
turn's report callback) and everything that listens (the sinks in daemon/observe/: metrics,
health, recent errors, the log): emitters and sinks import this and never each other, so
neither drags the other into its imports. stamina's ``instrumentation/`` is the model.
"""
