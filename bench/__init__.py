"""Benchmarks: ``python -m bench <command>`` (see ``bench/__main__.py`` for the commands)."""
