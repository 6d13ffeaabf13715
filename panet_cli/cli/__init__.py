"""The ``panet`` command line: thin wrappers over the library API, one module per command group."""
