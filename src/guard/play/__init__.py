"""`guard simulate` and `guard demo`: the real guard runtime against the local fake cloud.

The one place where the product and the fake Google Cloud meet outside the tests: a
scenario plays on the fake, the guard's own runtime (detector, responder, restore desk,
pager) watches and answers it through the official clients, and pages land on a real HTTP
receiver on loopback. Above `guard.service` in the layering; only the CLI imports it.
"""
