"""The console's windows and panes."""
