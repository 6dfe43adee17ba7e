"""Benchmarks: each figure beside a raw reference measured in the same run.

``sandboxctl bench`` (``python -m replay.bench.commands``) is the one entry
point; ``--only GROUP`` runs some suites. The suites (log, store, open,
verify, netns, eventsourcing, fleet) build ``rows.Row`` objects, the
runner aggregates them into one ``rows.SuiteResult`` per suite, and
``render`` prints them. docs/BENCHMARKS.md has the figures.
"""
