"""Trains the Space's bundled model and writes it to `model/` (run from the repository root: `python
spaces/make_model.py`; about 15 minutes on a 2-core CPU, no network).

The recipe's `demo` config (an Attention U-Net on the embedded `demo` dataset, 128 x 128 slices, 20 epochs), with
the narrowest widths (`base_channels=8`: 8-16-32-64-128, 0.5 M parameters, 2 MB of float32 safetensors) so that the
Space repository stays small. The best epoch's `save_pretrained` folder (`best/`: config, weights, image processor
and the model's code for `trust_remote_code` users) is copied as it was saved, with `metrics.json` (its validation
metrics) and a `README.md` quoting them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from hfseg.threads import configure_threads
from hfseg.training import load_config, train

HERE = Path(__file__).resolve().parent
OVERRIDES = ["model.kwargs.base_channels=8", "train.report_to=null"]
CARD = """\
# The Space's bundled model

An hfseg Attention U-Net (`attention-unet`, widths 8-16-32-64-128, {parameters:.2f} M parameters, {megabytes:.1f} MB of
float32 safetensors) that segments axial brain MRI slices (one grey channel, resized to 128 x 128) into background,
CSF and other brain, grey matter and white matter. Research demo only: not a medical device.

Made by `python spaces/make_model.py` (from the repository root): the recipe's `demo` config with the overrides
`{overrides}`, that is `hfseg.training.train(load_config("demo", [...]))` on the embedded `demo` dataset (slices of
the MNI ICBM152 2009a T1 template), {epochs} epochs, seed 0, {minutes:.0f} minutes on a 2-core CPU. This folder is
the run's `best/` (the best validation epoch) as the recipe saved it, with this README.

Validation ({eval_images} slices of the `demo` validation split), epoch {epoch}:

| metric | value |
|---|---|
| mean foreground Dice | {mean_foreground_dice:.3f} |
{per_class}
| mean foreground IoU | {mean_foreground_iou:.3f} |
| pixel accuracy | {pixel_accuracy:.3f} |

`metrics.json` holds all the validation metrics of that epoch. The template's copyright notice is in the Space's
README (Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University).
"""


def write_card(folder: Path, overrides: list[str], epochs: int, seconds: float) -> None:
    """`folder/README.md`: what the model is, how it was made, and its validation figures (`metrics.json`)."""
    from safetensors.torch import load_file

    metrics = json.loads((folder / "metrics.json").read_text())
    labels = json.loads((folder / "config.json").read_text())["id2label"]
    weights = folder / "model.safetensors"
    parameters = sum(t.numel() for t in load_file(weights).values())
    per_class = "\n".join(f"| Dice {labels[str(k)]} | {value:.3f} |" for k, value in enumerate(metrics["dice"]) if k)
    text = CARD.format(parameters=parameters / 1e6, megabytes=weights.stat().st_size / 1e6,
                       overrides=" ".join(overrides), epochs=epochs, minutes=seconds / 60,
                       eval_images=metrics["num_images"], per_class=per_class,
                       **{k: metrics[k] for k in ("epoch", "mean_foreground_dice", "mean_foreground_iou",
                                                  "pixel_accuracy")})
    (folder / "README.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(HERE / "model"), help="where the model goes (replaced)")
    parser.add_argument("--run_dir", default=None, help="the training run's folder (default: a temporary one)")
    args = parser.parse_args()
    configure_threads()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir or tmp)
        overrides = [f"train.output_dir={run_dir}", *OVERRIDES]
        cfg = load_config("demo", overrides)
        summary = train(cfg)
        output = Path(args.output)
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(run_dir / "best", output)
    write_card(output, OVERRIDES, cfg.train.epochs, summary["seconds"])
    metrics = json.loads((output / "metrics.json").read_text())
    print(f"{output}: validation mean foreground Dice {metrics['mean_foreground_dice']:.3f} (epoch {metrics['epoch']})")


if __name__ == "__main__":
    main()
