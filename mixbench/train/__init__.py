"""``mixbench train``'s library: the typed options (``options``), the plan with its
optional learning-rate tuning stage (``plan``, ``lr_tuning``), one trained cell (``cell``,
``schedule``), a training run directory (``run``) and its summary over seeds
(``summary``)."""
