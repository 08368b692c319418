"""Configuration of the small CNN classifier (the brain-tumour study's "customly developed CNN").

Self-contained (no hfseg imports) so that a checkpoint saved with `register_for_auto_class` loads with
`trust_remote_code=True` where hfseg is not installed.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import PretrainedConfig

GLOBAL_POOLS = ("avg", "max")


class SmallCNNConfig(PretrainedConfig):
    r"""
    Configuration of [`SmallCNNForImageClassification`]: conv-BN-ReLU blocks each ending in a 2x2 max pool, global
    pooling, dropout and a linear head.

    Args:
        num_channels (`int`, *optional*, defaults to 3):
            Input channels (1 for grey MRI, 3 for RGB).
        hidden_sizes (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
            Channels of each block; every block halves the resolution (max pool 2x2), so the input should be at
            least `2 ** len(hidden_sizes)` pixels on each side.
        convs_per_block (`int`, *optional*, defaults to 2):
            Conv-BN-ReLU layers in each block before its max pool.
        kernel_size (`int`, *optional*, defaults to 3):
            Odd kernel size of the convolutions ("same" padding).
        use_batchnorm (`bool`, *optional*, defaults to `True`):
            Batch norm between each convolution and its ReLU.
        global_pool (`str`, *optional*, defaults to `"avg"`):
            `"avg"` or `"max"` pooling of the last block's feature map to one vector.
        dropout (`float`, *optional*, defaults to 0.5):
            Dropout probability before the linear head.

    `num_labels == 1` makes a binary classifier (one logit, BCE loss); otherwise `forward` uses cross-entropy.
    """

    model_type = "hfseg_small_cnn"

    def __init__(
        self,
        num_channels: int = 3,
        hidden_sizes: Sequence[int] = (32, 64, 128, 256),
        convs_per_block: int = 2,
        kernel_size: int = 3,
        use_batchnorm: bool = True,
        global_pool: str = "avg",
        dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        hidden_sizes = [int(h) for h in hidden_sizes]
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes needs at least one positive entry, got {hidden_sizes}.")
        if int(num_channels) < 1:
            raise ValueError(f"num_channels must be >= 1, got {num_channels}.")
        if int(convs_per_block) < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {convs_per_block}.")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"Unknown global_pool {global_pool!r}; allowed values: {', '.join(GLOBAL_POOLS)}.")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.num_channels = int(num_channels)
        self.hidden_sizes = hidden_sizes
        self.convs_per_block = int(convs_per_block)
        self.kernel_size = int(kernel_size)
        self.use_batchnorm = bool(use_batchnorm)
        self.global_pool = global_pool
        self.dropout = float(dropout)
        super().__init__(**kwargs)
