"""The console: the POP3 Service snap-in (PySide6). Talks to the service only over the admin channel."""
