"""Tools for plugin authors: ``scaffold`` (``mixbench new-plugin`` from the files under
``templates/``), the conformance kit (``conformance``, public as ``mixbench.testing``) and
the pytest plugin (``pytest_plugin``; its helpers public as ``mixbench.pytest_plugin``)."""
