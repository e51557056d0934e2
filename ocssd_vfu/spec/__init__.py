"""Spec structures declared once (construct) and the spec's enums."""
