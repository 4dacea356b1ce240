"""``mixbench bench``'s library: the typed options and their plan (``options``), one
measured cell (``cell``) and a bench run directory (``run``)."""
