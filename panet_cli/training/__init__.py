"""Training our own weights. Imported only by the ``train`` command (never by inference or hub code)."""
