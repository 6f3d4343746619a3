"""SMTP: inbound for local domains, submission for users, the outgoing queue (DESIGN §7)."""
