"""Alerts beyond the store: users' alert rules, channels and the delivery worker (issue 17)."""
