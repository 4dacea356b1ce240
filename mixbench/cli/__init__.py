"""One module per group of CLI commands; none imports torch at module level."""
