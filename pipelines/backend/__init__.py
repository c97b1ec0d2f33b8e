"""The KFP v2 backend emulator: a compiled YAML run as the open-source backend (2.5, 2.14, 2.17) runs it.

``runner`` (the run, a container task's driver and launcher), ``dag`` (sub-DAGs, ParallelFor,
exit handlers), ``inputs`` (the driver's input resolution), ``cache`` (the cache fingerprint),
``render`` (executor input and command as the Go code renders them), ``metadata`` (ML Metadata as
the backend uses it), ``pod`` (object store, image environment, a task's process) and ``image``
(a task in the runtime image).
"""
