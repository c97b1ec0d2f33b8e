"""Submission to a Kubeflow Pipelines server.

``submit``: upload, run, schedule; ``auth``: token, TLS, namespace; ``errors``: the server's
answers as one line; ``cron``; ``submit_error``: the one exception of a submission.
"""
