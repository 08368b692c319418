"""Evaluate and compare trained models on a dataset split: `python recipes/evaluate.py --models A B --dataset demo`.

The script form of `hfseg evaluate` (`hfseg.training.cli`: the same flags; `--help` lists them). Runs in one
process; `accelerate launch recipes/evaluate.py ...` works too (on the launcher's device), but the work is not
split: with several processes only the main one evaluates and the others exit.

Examples:
    python recipes/evaluate.py --models runs/demo/best runs/unet/best --dataset demo
    python recipes/evaluate.py --models runs/brats/best --dataset brats2020-h5 --data_dir data/BraTS --regions brats
    python recipes/evaluate.py --models runs/uw/best --dataset uw-madison-gi --data_dir data/uw --sliding_window --tta
"""

from hfseg.training.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
