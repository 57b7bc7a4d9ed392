"""The Pegasus course platform's backend, as its team wrote it (a fixture, not product code).

The error-text generator copies these files into a scratch directory that stands for the
container's `/app`, and runs them for real, so every traceback frame in the fixture comes
from code a team would ship.
"""
