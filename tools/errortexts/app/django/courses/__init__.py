"""The courses app: raw-SQL views over the team's schema, and migrations that run its SQL."""
