"""Item models of the console: the scope tree and the result-pane tables."""
