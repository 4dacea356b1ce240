"""The core every other package builds on: the plugin loader and the registry of what
plugins registered (``plugin_loader``, ``registry``), a cache of registered names that
needs no plugin import (``namecache``), the MetaFormer every mixer is measured in
(``metaformer``), and the Python API that builds registered things by name (``api``)."""
