"""Deploy Guard: an automated deploy guard for Google Cloud Run.

Watches each deploy's logs and 5xx rate, and when a release breaks the database schema it
freezes the rollout, reverts traffic, pages humans with the failing migration, validates the
recovery and prepares a database restore that runs only after human approval.
"""

__version__ = "0.1.0"
