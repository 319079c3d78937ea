"""The stages: one module per script, the only library code that takes the site
:class:`~pqpf.config.Config` and derives paths (:mod:`pqpf.layout`). Each reads its
inputs through :mod:`pqpf.io`, calls the array-level core modules, and writes its
outputs through :mod:`pqpf.io`."""
