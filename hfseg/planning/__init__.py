"""Automatic planning as nnU-Net v2 does it: `fingerprint(dataset)`, then `plan(...)` -> `Plan`.

```python
from hfseg.planning import fingerprint, plan

fp = fingerprint(ds["train"])                          # spacings, shapes, foreground intensities
p = plan(fp, configuration="3d_fullres", memory_budget_gb=8)
print(p.describe())
```
See docs/planning.md for the rules and where hfseg differs from nnU-Net.
"""

from .fingerprint import Fingerprint, fingerprint
from .plan import DEFAULT_MEMORY_BUDGET_GB, Plan, apply_overrides, plan
from .rules import estimate_memory, get_pool_and_conv_props

__all__ = [
    "DEFAULT_MEMORY_BUDGET_GB",
    "Fingerprint",
    "Plan",
    "apply_overrides",
    "estimate_memory",
    "fingerprint",
    "get_pool_and_conv_props",
    "plan",
]
