"""`evaluate` metric scripts shipped with hfseg; load them with `hfseg.metrics.load(name)`.

Each folder is a package only so that setuptools installs it; `evaluate` copies the script into its module cache.
"""
