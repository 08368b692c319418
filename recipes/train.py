"""Train any hfseg model on any hfseg dataset: `accelerate launch recipes/train.py [--config NAME] [key=value ...]`.

The `accelerate launch` entry point of `hfseg train` (`hfseg.training.cli`: the same flags; `--help` lists them and
the bundled configs). With no arguments it trains the Attention U-Net on the embedded `demo` dataset (the bundled
config `demo`). Add `--num_processes N` to `accelerate launch` for data-parallel training.

Examples:
    accelerate launch recipes/train.py --config chaos_attention_unet --data_dir data/CHAOS
    accelerate launch recipes/train.py --config brain_tumor_resnet18 --data_dir data/brain-tumor
    accelerate launch recipes/train.py --epochs 5 model.name=segformer-b0 'model.kwargs={}' optim.lr=3e-4
    accelerate launch recipes/train.py --output_dir runs/demo --resume latest
"""

from hfseg.training.cli import train_main

if __name__ == "__main__":
    train_main()
