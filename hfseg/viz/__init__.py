"""Pictures shared by the training panels, the evaluation reports, the explanations, the model cards and the app."""

from .palette import PALETTE, colorize

__all__ = ["PALETTE", "colorize"]
