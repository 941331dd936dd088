"""The export pipeline: plan the steps of one or several targets, run each once in a child process,
verify it, and move each finished artifact into place atomically.

The package imports nothing itself (`edgekit.export` is `edgekit.pipeline.export.export`), so that the
step server and the step worker, which run as `python -m edgekit.pipeline.<module>`, start without
torch and tie their lives to the export at once (see `forkserver`).
"""
