"""Built-in optimizers: each module registers through the public ``register_optimizers`` hook.

``sgd`` and ``adam``/``adamw`` wrap ``torch.optim``; ``sam`` wraps any registered optimizer by
name. Every factory has the plugin signature ``factory(params, lr, **options)``.
"""
