"""Lineage of runs.

``store``: ML Metadata on the storage root, the queries and the command; ``volume``: the same
answer from the registry and the artifacts' manifests on the volume, without ML Metadata;
``report``: what ``python -m pipelines.lineage`` prints.
"""
