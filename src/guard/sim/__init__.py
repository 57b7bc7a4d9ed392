"""A local fake of the Google Cloud APIs the guard uses, and the scenario engine that drives it.

Google ships no emulators for Cloud Run Admin, Monitoring, Logging, Cloud SQL Admin, Secret
Manager or Cloud Deploy, so tests, the demo and the benchmarks talk to this fake instead,
through the official client libraries, unmodified, over real gRPC (and REST where a client
only speaks REST). Nothing in the product imports this package; only the CLI's `demo` and
`simulate` commands and the tests do.
"""
