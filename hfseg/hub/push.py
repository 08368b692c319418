"""`push_to_hub`: upload a training run, packaged by `build_hub_folder`, to a Hub model repository."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import huggingface_hub

from .folder import build_hub_folder


def push_to_hub(run_dir: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload model trained with hfseg", **card_kwargs: Any) -> str:
    """Package the run in `run_dir` (`build_hub_folder`) and upload it to `repo_id`, created if needed.

    The folder is built first, so a broken run fails before anything is created on the Hub.

    Args:
        run_dir (`str` or `os.PathLike`): the run folder (the recipe's `train.output_dir`).
        repo_id (`str`): `owner/name` of the model repository (`name` alone: the token's user).
        private (`bool`, *optional*, defaults to `False`): visibility of a new repository; an existing one keeps
            its own.
        token (`str`, *optional*): a Hub token with write access; defaults to the saved login or `HF_TOKEN`.
        commit_message (`str`, *optional*): the upload's commit message.
        card_kwargs: `weights`, `license`, `dataset_id`, `tags` of `build_hub_folder`.

    Returns:
        `str`: the URL of the upload's commit.
    """
    with tempfile.TemporaryDirectory(prefix="hfseg-hub-") as tmp:
        folder = build_hub_folder(run_dir, Path(tmp) / "upload", repo_id=repo_id, **card_kwargs)
        repo = huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
        full_id = getattr(repo, "repo_id", None) or repo_id
        if full_id != repo_id:  # the owner was filled in: name the full id in the card
            folder = build_hub_folder(run_dir, folder, repo_id=full_id, overwrite=True, **card_kwargs)
        commit = huggingface_hub.upload_folder(repo_id=full_id, folder_path=str(folder), token=token,
                                               commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))
