"""Share a training run on the Hugging Face Hub: the upload folder, its model card, and the upload.

- `build_hub_folder(run_dir)` -> the exact folder to upload: safetensors model with `auto_map` and code,
  image processor, README.md model card (`model-index` of the validation metrics), images/, training_config.yaml,
  metrics.json, eval_results.json, history.csv.
- `push_to_hub(run_dir, repo_id)` -> builds it in a temporary folder, `create_repo`, `upload_folder`; the commit URL.
- `read_run(run_dir)` / `model_card(...)`: the pieces, for custom packaging.
"""

from .card import card_data, model_card
from .folder import build_hub_folder
from .push import push_to_hub
from .run import TrainingRun, read_run

__all__ = ["TrainingRun", "build_hub_folder", "card_data", "model_card", "push_to_hub", "read_run"]
