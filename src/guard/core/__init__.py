"""The guard's judgement, without I/O: the domain model, rules, and (later) the classifier,
the 5xx statistics and the incident state machine.

Nothing here may import an adapter, the service, the fake cloud, a Google client or any
network/database library; import-linter checks that in CI (see `.importlinter`).
"""
