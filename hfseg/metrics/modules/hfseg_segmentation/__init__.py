"""The `hfseg_segmentation` evaluate metric (see hfseg_segmentation.py)."""
