"""`push_to_hub`: a thin `create_repo` + `upload_folder` of exactly `build_hub_folder`'s folder. The real upload
runs only against a Hub given by `HF_ENDPOINT` and `HF_TOKEN`."""

import os
import uuid
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import CommitInfo, RepoUrl

from hfseg.hub import build_hub_folder, push_to_hub

ENDPOINT = "https://huggingface.co"  # only parsed, never contacted


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def fake_hub(monkeypatch):
    calls = {"create": [], "upload": []}

    def create_repo(repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        calls["create"].append(dict(repo_id=repo_id, token=token, private=private, exist_ok=exist_ok, **kwargs))
        full = repo_id if "/" in repo_id else f"alice/{repo_id}"
        return RepoUrl(f"{ENDPOINT}/{full}", endpoint=ENDPOINT)

    def upload_folder(*, repo_id, folder_path, token=None, commit_message=None, **kwargs):
        calls["upload"].append(dict(repo_id=repo_id, token=token, commit_message=commit_message,
                                    files=files_of(Path(folder_path)), **kwargs))
        return CommitInfo(commit_url=f"{ENDPOINT}/{repo_id}/commit/abc123", commit_message=commit_message,
                          commit_description="", oid="abc123")

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


def test_uploads_exactly_the_built_folder(seg_run, tmp_path, fake_hub):
    url = push_to_hub(seg_run, "me/tiny-unet", private=True, token="hf_x", license="mit")
    assert url == f"{ENDPOINT}/me/tiny-unet/commit/abc123"
    assert fake_hub["create"] == [dict(repo_id="me/tiny-unet", token="hf_x", private=True, exist_ok=True)]
    [upload] = fake_hub["upload"]
    assert (upload["repo_id"], upload["token"], upload["commit_message"]) == (
        "me/tiny-unet", "hf_x", "Upload model trained with hfseg")
    expected = files_of(build_hub_folder(seg_run, tmp_path / "hub", repo_id="me/tiny-unet", license="mit"))
    assert upload["files"].keys() == expected.keys()
    assert upload["files"] == expected


def test_a_repo_name_without_owner_gets_the_owner_in_the_card(seg_run, fake_hub):
    url = push_to_hub(seg_run, "tiny-unet")
    [upload] = fake_hub["upload"]
    assert upload["repo_id"] == "alice/tiny-unet" and url == f"{ENDPOINT}/alice/tiny-unet/commit/abc123"
    assert b'repo_id = "alice/tiny-unet"' in upload["files"]["README.md"]


def test_a_broken_run_fails_before_anything_is_created(tmp_path, fake_hub):
    with pytest.raises(FileNotFoundError, match="not an hfseg training run"):
        push_to_hub(tmp_path, "me/x")
    assert fake_hub == {"create": [], "upload": []}


@pytest.mark.skipif(not (os.environ.get("HF_ENDPOINT") and os.environ.get("HF_TOKEN")),
                    reason="a real upload needs a Hub: set HF_ENDPOINT (e.g. a staging or local Hub) and HF_TOKEN")
def test_real_upload(seg_run, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests default to offline
    api = huggingface_hub.HfApi()
    repo_id = f"{api.whoami()['name']}/hfseg-hub-test-{uuid.uuid4().hex[:8]}"
    try:
        url = push_to_hub(seg_run, repo_id, private=True)
        assert repo_id in url
        local = build_hub_folder(seg_run, tmp_path / "hub", repo_id=repo_id)
        assert set(api.list_repo_files(repo_id)) - {".gitattributes"} == set(files_of(local))
        readme = huggingface_hub.hf_hub_download(repo_id, "README.md", local_dir=tmp_path / "download")
        assert open(readme, "rb").read() == (local / "README.md").read_bytes()
    finally:
        api.delete_repo(repo_id, missing_ok=True)
