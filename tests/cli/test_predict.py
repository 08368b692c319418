"""`hfseg predict` in a subprocess, as a user runs it: a mixed list of good and bad inputs, every output format,
one line per bad file, no traceback, a non-zero exit code; and the class-volume CSV."""

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import hfseg
import hfseg.io
from hfseg.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny U-Net saved as a run's `best/` folder, with a processor that records MR training data."""
    folder = tmp_path_factory.mktemp("run") / "best"
    config = hfseg.UNetConfig(num_channels=1, num_labels=3, base_channels=4, depth=2,
                              id2label={0: "background", 1: "tissue", 2: "lesion"})
    hfseg.UNetForSemanticSegmentation(config).save_pretrained(folder)
    hfseg.UNetImageProcessor(normalization="zscore", num_channels=1, modality="MR",
                             intensity_range=[0.0, 255.0]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    pictures = root / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(pictures / f"slice{i}.png")
    (pictures / "notes.txt").write_text("not an image")  # not a picture: left out of the folder's inputs
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series, uid = root / "ct_series", generate_uid()
    series.mkdir()
    for k, name in enumerate(["b.dcm", "c.dcm", "a.dcm"]):
        ds = copy.deepcopy(source)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.ImagePositionPatient = [*map(float, source.ImagePositionPatient[:2]), float(source.ImagePositionPatient[2]) + 5 * k]
        ds.save_as(series / name)
    truncated = root / "truncated.nii.gz"
    truncated.write_bytes((Path(data_path) / "example4d.nii.gz").read_bytes()[:300])
    (root / "empty.png").write_bytes(b"")
    return {"pictures": pictures, "series": series, "anatomical": Path(data_path) / "anatomical.nii",
            "4d": Path(data_path) / "example4d.nii.gz", "truncated": truncated, "empty": root / "empty.png",
            "missing": root / "missing.nii.gz", "unsupported": pictures / "notes.txt"}


def _run(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "hfseg", "predict", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_good_inputs_are_written_and_each_bad_one_is_one_line(model_dir, inputs, tmp_path):
    out = tmp_path / "masks"
    bad = [inputs[k] for k in ("4d", "truncated", "empty", "missing", "unsupported")]
    done = _run("--model", model_dir, inputs["anatomical"], inputs["series"], inputs["pictures"], *bad,
                "--format", "auto", "dicom-seg", "--output-dir", out, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad), done.stderr
    for path, line in zip(bad, errors):
        assert path.name in line
    assert "volume=N" in errors[0] or "--volume" in errors[0]  # the 4D file says how to choose
    assert "4 of 9 input(s) written" in done.stdout and "5 failed" in done.stdout
    # Good outputs: NIfTI with the scan's geometry, DICOM-SEG for the DICOM series, PNGs for pictures.
    anatomical = nib.load(out / "anatomical_mask.nii.gz")
    source = nib.load(inputs["anatomical"])
    assert anatomical.shape == source.shape and np.allclose(anatomical.affine, source.affine)
    assert nib.aff2axcodes(anatomical.affine) == nib.aff2axcodes(source.affine)
    series = nib.load(out / "ct_series_mask.nii.gz")
    assert series.shape == (128, 128, 3) and np.allclose(series.affine, hfseg.io.read(inputs["series"]).affine)
    seg = pydicom.dcmread(out / "ct_series_seg.dcm")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert {s.SegmentLabel for s in seg.SegmentSequence} == {"tissue", "lesion"}
    assert {Image.open(out / f"slice{i}_mask.png").size for i in range(2)} == {(20, 24)}
    # One CSV row per input, class volumes in mm³ for scans, and the modality warning for the CT series.
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(out / "volumes.csv"))}
    assert len(rows) == 4 + len(bad)
    assert rows["anatomical.nii"]["unit"] == "mm3" and rows["slice0.png"]["unit"] == "pixels"
    total = sum(float(rows["anatomical.nii"][k]) for k in ("background", "tissue", "lesion"))
    assert total == pytest.approx(np.prod(source.shape) * 8.0)  # 2 mm voxels
    assert "trained on MR" in rows["ct_series"]["notes"] and "warning:" in done.stderr
    assert rows["truncated.nii.gz"]["status"] == "error"


def test_exit_codes_and_debug(model_dir, inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--help"])
    assert exit_.value.code == 0 and "--output-dir" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(model_dir)])  # no input, no output folder
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(model_dir), "x.nii", "--output-dir", "o", "--plane", "oblique"])
    assert exit_.value.code == 2 and "choose axial, coronal, sagittal" in capsys.readouterr().err
    main(["predict", "--model", str(model_dir), str(inputs["pictures"] / "slice0.png"), "--output-dir",
          str(tmp_path / "ok")])  # success: no SystemExit
    assert (tmp_path / "ok" / "slice0_mask.png").is_file()
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(tmp_path / "no_model"), str(inputs["anatomical"]), "--output-dir",
              str(tmp_path / "x")])
    assert exit_.value.code == 1 and "cannot load the model" in capsys.readouterr().err
    done = _run("--model", model_dir, inputs["truncated"], "--output-dir", tmp_path / "d", "--debug", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_4d_volume_and_formats(model_dir, inputs, tmp_path):
    out = tmp_path / "m"
    main_args = ["predict", "--model", str(model_dir), str(inputs["4d"]), "--volume", "1", "--output-dir", str(out)]
    main(main_args)
    mask = nib.load(out / "example4d_mask.nii.gz")
    assert mask.shape == nib.load(inputs["4d"]).shape[:3]
    with pytest.raises(SystemExit):  # a PNG cannot hold a volume's mask
        main(["predict", "--model", str(model_dir), str(inputs["anatomical"]), "--format", "png",
              "--output-dir", str(out)])


def test_a_3d_model_writes_a_nifti_aligned_with_each_input_volume(tiny_3d_run, spheres_nnunet, tmp_path):
    run, _ = tiny_3d_run
    source = spheres_nnunet / "imagesTs" / "ball_005_0000.nii.gz"
    tilted = tmp_path / "tilted.nii.gz"  # an oblique affine and another origin: the mask must keep both
    original = nib.load(source)
    affine = original.affine.copy()
    affine[:3, :3] = affine[:3, :3] @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    nib.save(nib.Nifti1Image(np.asarray(original.dataobj), affine), tilted)
    main(["predict", "--model", str(run / "best"), str(source), str(tilted), "--output-dir", str(tmp_path / "out")])
    for path in (source, tilted):
        mask = nib.load(tmp_path / "out" / f"{path.name.removesuffix('.nii.gz')}_mask.nii.gz")
        assert mask.shape == nib.load(path).shape
        np.testing.assert_allclose(mask.affine, nib.load(path).affine, atol=1e-5)
    first = nib.load(tmp_path / "out" / "ball_005_0000_mask.nii.gz").get_fdata()
    second = nib.load(tmp_path / "out" / "tilted_mask.nii.gz").get_fdata()
    np.testing.assert_array_equal(first, second)  # a 3D model sees the stored voxels whatever the orientation
    rows = list(csv.DictReader(open(tmp_path / "out" / "volumes.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["unit"] == "mm3"


def test_shipped_model_code_runs_only_with_trust_remote_code(shipped_code_checkpoint, inputs, tmp_path, capsys):
    folder, marker = shipped_code_checkpoint
    args = ["predict", str(inputs["pictures"]), "--model", str(folder), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="1"):
        main(args)
    err = capsys.readouterr().err
    assert "error: cannot load the model" in err and "add --trust-remote-code only if you trust" in err, err
    assert not marker.exists()
    with pytest.raises((SystemExit, Exception)):  # the code runs, then the model (no such class) fails to load
        main([*args, "--trust-remote-code"])
    assert marker.exists()
