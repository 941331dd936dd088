"""`edgekit train` and `edgekit eval`: a real fine-tune of mobilenet_v2 on 9 coarse classes of the sample
photos, exported and verified; stage mapping of every family; each kind of bad input refused cleanly."""

from __future__ import annotations

import json
from itertools import chain, zip_longest
from pathlib import Path

import pytest
import torch

import edgekit
from edgekit.calibration import demo_image
from edgekit.cli import main
from edgekit.models import create_model, list_models
from edgekit.training import recipe as recipes
from tests.conftest import SHARED_DATA, linked_photos

COARSE = SHARED_DATA / "coarse-classes.tsv"
CLASSES = 9


def build_coarse_folder(sample: Path, root: Path) -> Path:
    """The 9-class ImageFolder of the sample photos, as symlinks (the photos never enter the repository)."""
    rows = [line.split("\t") for line in COARSE.read_text().splitlines()[1:] if line.strip()]
    coarse = {synset: name for _, synset, name in rows}
    for photo in sorted(sample.iterdir()):
        name = coarse.get(photo.name.split("_")[0])
        if name:
            (root / name).mkdir(parents=True, exist_ok=True)
            (root / name / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def coarse(imagenet_sample, tmp_path_factory) -> Path:
    if not COARSE.is_file():
        pytest.skip(f"{COARSE} is absent")
    return build_coarse_folder(imagenet_sample, tmp_path_factory.mktemp("coarse") / "images")


def _calibration_folder(history: dict, data: Path, root: Path, size: int = 40) -> Path:
    """Training photos (never validation ones), taken from every class in turn, to calibrate int8 on."""
    held = {Path(p).name for p, _ in history["val_files"]}
    by_class = [sorted(p for p in (data / c).iterdir() if p.name not in held) for c in history["classes"]]
    picked = [p for p in chain(*zip_longest(*by_class)) if p][:size]
    for photo in picked:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (root / photo.parent.name / photo.name).symlink_to(photo.resolve())
    return root


def _split_folder(history: dict, root: Path) -> Path:
    """The run's validation photos as an ImageFolder, from the file list its history records."""
    for path, name in history["val_files"]:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / Path(path).name).symlink_to(Path(path).resolve())
    return root


@pytest.mark.slow
def test_fine_tune_export_verify_predict(coarse, tmp_path):
    run = tmp_path / "run"
    result = edgekit.train("mobilenet_v2", coarse, out=run, val_split=0.2, weights="imagenet", progress=False,
                           epochs=3, lr=3e-3, freeze="all", augment=0.5)
    history = json.loads((run / "history.json").read_text())
    assert [row["epoch"] for row in history["history"]] == [1, 2, 3]
    assert history["recipe"]["label_smoothing"] == 0.1 and history["recipe"]["amp"] is False
    assert (run / "curves.png").stat().st_size > 10_000
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "curves.png", "history.json"]
    assert result.best["val_top1"] >= 0.5, history["history"]  # chance is 1/9, the largest class 25%
    metadata = torch.load(result.checkpoint, weights_only=True)["edgekit"]
    assert metadata["class_names"] == sorted(p.name for p in coarse.iterdir())
    assert metadata["num_classes"] == CLASSES and metadata["input_size"] == 224
    assert metadata["ema"] == (metadata["weights_from"] == "ema")

    val = _split_folder(history, tmp_path / "val")
    # Calibrated on the bundled photos (none of these classes' kind of data) int8 agreed on 93% of decisive probes.
    calib = _calibration_folder(history, coarse, tmp_path / "calib")
    artifacts = edgekit.export("mobilenet_v2", ["onnx", "tflite-int8"], weights=result.checkpoint,
                               out=tmp_path / "out", data=val, calib=calib, progress=False)
    for artifact in artifacts.values():
        assert artifact.status == "verified"
        assert list(artifact.manifest["card"]["labels"]) == metadata["class_names"]
        assert (artifact.directory / "labels.txt").read_text().split() == metadata["class_names"]
    assert edgekit.verify(artifacts["tflite-int8"].directory, data=val).passed  # probes of these classes

    photo = next((val / "dog").iterdir())
    guesses = edgekit.predict(artifacts["tflite-int8"].directory, [photo], topk=3)[0]["topk"]
    assert {g["name"] for g in guesses} <= set(metadata["class_names"])
    assert guesses[0]["name"] == "dog"

    reference = edgekit.evaluate(result.checkpoint, val, out=tmp_path / "eval-ckpt")
    int8 = edgekit.evaluate(artifacts["tflite-int8"].directory, val, out=tmp_path / "eval-int8")
    assert reference.images == int8.images == history["val_images"]
    assert abs(reference.top1 - metadata["val_top1"]) <= 0.05
    assert int8.top1 >= reference.top1 - 0.1 and int8.top1 >= 0.5
    assert (tmp_path / "eval-int8" / "confusion.png").is_file()
    assert sum(map(sum, int8.confusion)) == int8.images


@pytest.mark.parametrize("name", [n for n in list_models() if n.endswith(("x0_5", "b0", "lite0", "v2"))])
def test_freeze_and_layerwise_lr_follow_the_stages(name):
    model = create_model(name, num_classes=3)
    names = [n for n, _ in recipes.stages(model)]
    own = {n for n, _ in model.named_modules()}
    assert names and set(names) <= own
    assert recipes.head_name(model) not in names
    frozen = recipes.resolve_freeze("-2", names, name)
    assert frozen == names[:-2]
    recipes.apply_freeze(model, frozen)
    groups = recipes.describe_groups(recipes.param_groups(model, recipes.Recipe(lr_decay=0.5), frozen))
    assert [g["stage"] for g in groups] == [recipes.head_name(model), names[-1], names[-2]]
    assert [g["lr_multiplier"] for g in groups] == [1.0, 0.5, 0.25]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(g["params"] for g in groups)


def _tiny(root: Path, sample: Path, classes=("a", "b"), per_class=2) -> Path:
    photos = sorted(sample.iterdir())
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.jpg").symlink_to(photos[c * per_class + i])
    return root


def _refused(args: list[str], out: Path, capsys) -> str:
    code = main(["train", "mobilenet_v2", *args, "--out", str(out), "--quiet", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return err


def test_refuses_an_empty_folder(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert "has no class folders" in _refused(["--data", str(tmp_path / "data"), "--val-split", "0.2"],
                                              tmp_path / "run", capsys)


def test_refuses_a_single_class(imagenet_sample, tmp_path, capsys):
    data = _tiny(tmp_path / "data", imagenet_sample, classes=("only",))
    assert "single class ('only')" in _refused(["--data", str(data), "--val-split", "0.2"], tmp_path / "run", capsys)


def test_refuses_unreadable_images(imagenet_sample, tmp_path, capsys):
    data = _tiny(tmp_path / "data", imagenet_sample)
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    err = _refused(["--data", str(data), "--val-split", "0.2"], tmp_path / "run", capsys)
    assert "1 of 5 training images cannot be read" in err and "broken.jpg" in err


def test_refuses_a_class_folder_without_images(imagenet_sample, tmp_path, capsys):
    data = _tiny(tmp_path / "data", imagenet_sample)
    (data / "c").mkdir()
    (data / "c" / "notes.txt").write_text("no images here")
    assert "class folder(s) with no images" in _refused(["--data", str(data), "--val-split", "0.5"],
                                                       tmp_path / "run", capsys)


def test_refuses_a_stage_the_model_lacks(imagenet_sample, tmp_path, capsys):
    data = _tiny(tmp_path / "data", imagenet_sample)
    err = _refused(["--data", str(data), "--val-split", "0.5", "--freeze", "stage2"], tmp_path / "run", capsys)
    assert "'stage2' that mobilenet_v2 lacks" in err and "features.18" in err


def test_refuses_freezing_more_stages_than_exist(imagenet_sample, tmp_path, capsys):
    data = _tiny(tmp_path / "data", imagenet_sample)
    err = _refused(["--data", str(data), "--val-split", "0.5", "--freeze", "25"], tmp_path / "run", capsys)
    assert "cannot freeze more stages than exist; mobilenet_v2 has 19 stages" in err


def _tiny_checkpoint(path: Path, classes=("cat", "dog")) -> Path:
    model = create_model("shufflenet_v2_cifar_x0_5", num_classes=len(classes))
    torch.save({"state_dict": model.state_dict(),
                "edgekit": {"model": "shufflenet_v2_cifar_x0_5", "class_names": list(classes),
                            "num_classes": len(classes), "input_size": 32}}, path)
    return path


def test_eval_scores_a_checkpoint_on_its_class_folders(imagenet_sample, tmp_path, capsys):
    checkpoint = _tiny_checkpoint(tmp_path / "ckpt.pt")
    data = _tiny(tmp_path / "data", imagenet_sample, classes=("cat", "dog"), per_class=3)
    assert main(["eval", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "eval"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6 and report["kind"] == "checkpoint" and report["classes"] == ["cat", "dog"]
    assert sum(map(sum, report["confusion"])) == 6
    assert report["top1"] == pytest.approx(sum(report["confusion"][i][i] for i in range(2)) / 6, abs=1e-4)
    assert report["top5"] == 1.0  # two classes: always in the top 5
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 5_000
    assert callable(edgekit.evaluate) and callable(edgekit.train)  # not shadowed by a submodule once imported


def test_eval_refuses_folders_that_name_no_class(imagenet_sample, tmp_path, capsys):
    checkpoint = _tiny_checkpoint(tmp_path / "ckpt.pt")
    data = _tiny(tmp_path / "data", imagenet_sample, classes=("cat", "horse"))
    assert main(["eval", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "eval")]) == 2
    assert "folder(s) horse name no class of the model" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_a_relative_checkpoint_path_resolves_for_the_converter_steps(tmp_path, monkeypatch):
    from edgekit.models import get_card
    from edgekit.models.weights import weights_path

    _tiny_checkpoint(tmp_path / "ckpt.pt")
    monkeypatch.chdir(tmp_path)  # export's converter steps run in their own folder, so the path must be absolute
    assert weights_path(get_card("shufflenet_v2_cifar_x0_5"), "ckpt.pt") == tmp_path / "ckpt.pt"


@pytest.mark.slow
@pytest.mark.xdist_group("mobilenet_v2")
def test_eval_reads_synsets_from_file_names(exported, imagenet_sample: Path, tmp_path: Path, capsys) -> None:
    artifact = exported("mobilenet_v2", "onnx", weights="imagenet")
    photos = linked_photos(tmp_path / "photos", sorted(imagenet_sample.glob("*.JPEG"))[:60])
    out = tmp_path / "eval"
    assert main(["eval", str(artifact.directory), "--data", str(photos), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 60 and report["confusion_of"] == "classes present"
    true = [name for name in report["per_class_top1"]]
    assert len(true) == 60 and set(true) <= set(report["classes"]) and len(report["classes"]) < 120
    assert sum(map(sum, report["confusion"])) == 60
    hits = sum(report["confusion"][report["classes"].index(name)][report["classes"].index(name)] for name in true)
    assert report["top1"] == pytest.approx(hits / 60, abs=1e-4) and report["top1"] > 0.6  # a 1000-class model
    assert 5_000 < (out / "confusion.png").stat().st_size < 3_000_000  # drawn, not a 1000 x 1000 grid
    assert main(["eval", str(artifact.directory), "--data", str(photos), "--out", str(out)]) == 0
    assert "per-class top-1 of 60 classes: in" in capsys.readouterr().out
    (photos / "holiday.jpg").symlink_to(demo_image())
    assert main(["eval", str(artifact.directory), "--data", str(photos), "--out", str(out)]) == 2
    assert "1 of 61 images name no ImageNet synset (holiday.jpg)" in capsys.readouterr().err
    (photos / "holiday.jpg").unlink()
    for name in ("n01440764_a_broken.JPEG", "n15075141_z_broken.JPEG"):  # first and second chunk of 32
        (photos / name).write_bytes(b"not a jpeg")
    assert main(["eval", str(artifact.directory), "--data", str(photos), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 of 62 image files cannot be read" in err and "a_broken" in err and "z_broken" in err
