"""The setup wizard (first start, and re-run from the console for ports, certificate, storage)."""
