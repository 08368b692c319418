"""`python -m hfseg`: print the version and the models `hfseg.create_model` builds."""

from . import __version__
from .models.presets import UNET_PRESETS
from .models.zoo import FAMILIES


def main() -> None:
    print(f"hfseg {__version__}: create_model(name, num_labels=..., num_channels=..., pretrained=...)")
    print("U-Net presets (hfseg_unet):")
    for name, kwargs in UNET_PRESETS.items():
        print(f"  {name:26s} {', '.join(f'{k}={v}' for k, v in kwargs.items())}")
    print("transformers families (default pretrained checkpoint):")
    for name, family in FAMILIES.items():
        print(f"  {name:26s} {family.model_class.__name__} ({family.checkpoint})")


if __name__ == "__main__":
    main()
