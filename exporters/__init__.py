"""Exporters: one module per format, each a set of small step functions.

Every step function has the signature `fn(source, spec, out) -> dict`:
`source` is the step's input (a torch module for the first step, else a file or folder made by
an earlier step), `spec` the `ExportSpec`, and `out` the path to write. It returns notes for the
manifest: contract changes under "contract", and free-form facts under "notes" and "info".
"""
