"""Built-in mixbench plugins: mixers, optimizers and tasks, registered via entry points."""
