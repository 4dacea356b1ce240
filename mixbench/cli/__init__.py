"""The ``mixbench`` command line: the Typer app (``app``) and one module per group of
commands. The only package that imports typer; none of its modules imports torch at
module level."""
