"""The mail service: one asyncio process with the POP3 and SMTP listeners and the admin channel."""
