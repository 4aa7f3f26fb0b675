"""Operator tools: the replay generator (``python -m tools.replay``) and the demo."""
