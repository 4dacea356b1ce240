"""Built-in training tasks: each module registers through the public ``register_tasks`` hook.

``digits`` (scikit-learn's bundled 8x8 digits), ``mqar`` (synthetic multi-query associative
recall) and ``cifar10`` (read from a local copy in the official binary format). None of them
downloads anything.
"""
