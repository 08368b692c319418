"""`hfseg plan`: the plan printed and written as JSON, overrides, bad arguments."""

import json

import pytest

from hfseg.cli import main


def test_plan_prints_and_writes_the_plan(spheres_nnunet, tmp_path, capsys):
    out = tmp_path / "plan.json"
    main(["plan", "--dataset", "nnunet", "--data_dir", str(spheres_nnunet), "--output", str(out),
          "--data_options", f"cache_dir={tmp_path / 'cache'}"])
    text = capsys.readouterr().out
    assert "3d_fullres" in text and "target spacing" in text and "patch size" in text
    plan = json.loads(out.read_text())
    assert plan["configuration"] == "3d_fullres" and plan["target_spacing"] == [1.5, 1.5, 3.0]
    assert plan["normalization"][0]["scheme"] == "ct"
    main(["plan", "--dataset", "nnunet", "--data_dir", str(spheres_nnunet), "--configuration", "2d",
          "--set", "batch_size=3", "--output", str(out), "--data_options", f"cache_dir={tmp_path / 'cache'}"])
    plan = json.loads(out.read_text())
    assert plan["configuration"] == "2d" and plan["batch_size"] == 3 and plan["slice_axis"] == 2


def test_plan_refuses_bad_arguments(spheres_nnunet, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--dataset", "nnunet", "--data_dir", str(spheres_nnunet), "--configuration", "3d_lowres"])
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="patch_sise|Unknown"):
        main(["plan", "--dataset", "nnunet", "--data_dir", str(spheres_nnunet), "--set", "patch_sise=[8,8,8]",
              "--data_options", f"cache_dir={tmp_path / 'cache'}"])
