"""Settings of the whole suite, loaded before any test module is imported."""

from __future__ import annotations

from hypothesis import settings

# Property tests draw the same examples on every run, with no deadline and no too-slow health
# check (Hypothesis' own "ci" profile): a failure is a bug, never a draw or a loaded machine.
# `pytest --hypothesis-profile=default` draws new examples.
settings.load_profile("ci")
