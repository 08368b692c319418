"""Benchmarks of hfseg against MONAI and segmentation_models_pytorch (not part of the package or the test run).

- `python -m benchmarks.models`: training images/s, inference latency, peak memory, parameters and GFLOPs.
- `python -m benchmarks.data`: samples/s of the data pipeline against the training step rate.
- `python -m benchmarks.quality`: validation Dice and wall time at an equal training budget on the demo dataset.

The peers are benchmark-only dependencies: `pip install -e ".[bench]"`. See `benchmarks/README.md`.
"""
