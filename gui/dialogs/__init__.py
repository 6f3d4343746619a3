"""The console's dialogs."""
