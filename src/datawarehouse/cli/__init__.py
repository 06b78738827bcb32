"""cli: the ``dwh`` command, one module per noun; thin, it calls services."""
