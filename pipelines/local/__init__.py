"""A run on this machine.

``run``: preflight, data onto the storage folder, compile, execute; ``inprocess``: the compiled
YAML in this process; ``preflight`` and ``console``: what is checked first and what a run prints.
"""
