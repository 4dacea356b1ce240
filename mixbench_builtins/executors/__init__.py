"""Built-in sweep executors, each registered through the public ``register_executors`` hook.

``inline`` runs cells in the sweep's own process (development, debugging); ``subprocess``
runs each cell in an isolated worker process (the default); ``ray`` fans cells out over a
Ray cluster (optional extra ``mixbench[ray]``). None imports torch or ray at module level, so
listing executors costs nothing.
"""
