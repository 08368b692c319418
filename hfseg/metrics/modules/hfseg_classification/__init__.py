"""The `hfseg_classification` evaluate metric (see hfseg_classification.py)."""
