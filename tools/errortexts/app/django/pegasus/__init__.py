"""The Pegasus Django project (the Django edition of the team's backend; a fixture)."""
