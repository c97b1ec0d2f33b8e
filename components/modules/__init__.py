"""Built-in user modules: the ``module_file`` a run uses when it names none (names.DEFAULT_MODULE)."""
