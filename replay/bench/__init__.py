"""Benchmarks: each figure beside a raw reference measured in the same run.

``sandboxctl bench`` (``replay.bench.commands``) runs them all; each area
module (log, store, netns, fleet, openscale, verify) also runs alone with
``python -m replay.bench.<module>``. docs/BENCHMARKS.md has the figures.
"""
