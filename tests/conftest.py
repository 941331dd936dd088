"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from edgekit.pipeline.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IMAGENET_SAMPLE = SHARED_DATA / "imagenet-sample"

torch.set_num_threads(1)
keep_freed_memory()  # as the CLI does for itself: the exports these tests run in-process fault fewer pages


def pytest_addoption(parser) -> None:
    parser.addoption("--shard", default=None, help="run shard i of n (i/n, 1-based) of the collected tests")


def pytest_collection_modifyitems(config, items) -> None:
    shard = config.getoption("--shard")
    if not shard:
        return
    index, count = (int(x) for x in shard.split("/"))
    if not 1 <= index <= count:
        raise pytest.UsageError(f"--shard {shard}: expected i/n with 1 <= i <= n")
    keep = [item for position, item in enumerate(sorted(items, key=lambda i: i.nodeid)) if position % count == index - 1]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = [item for item in items if item in keep]


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """The 500 labelled ImageNet photos beside the repository (never copied into it)."""
    if not IMAGENET_SAMPLE.is_dir():
        pytest.skip(f"{IMAGENET_SAMPLE} is absent; it holds the real test photos")
    return IMAGENET_SAMPLE


def linked_photos(folder: Path, photos, unlabelled: bool = False) -> Path:
    """`folder` holding symlinks to `photos` (ImageNet photos are linked, never copied into the project); with
    `unlabelled`, named photo000, photo001... so that no synset (label) can be read from the names."""
    folder.mkdir()
    for index, photo in enumerate(photos):
        (folder / (f"photo{index:03d}{photo.suffix}" if unlabelled else photo.name)).symlink_to(photo)
    return folder


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every BatchNorm non-trivial statistics, so a wrong epsilon or order shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


_EXPORTS: dict = {}


@pytest.fixture(scope="session")
def exported(tmp_path_factory, request):
    """Exports (model, target, options) once per test worker and returns the Artifact (or raises its error).

    The first request for a model exports, in one multi-target run that shares its steps, every target
    that the collected items of the same test function will ask of that model with those options
    (parameters `model`, default mobilenet_v2, and `target`), so the suite pays for one ONNX export
    and one onnx2tf pass per model instead of one per target. `share_with="test_function_name"` names
    another parametrized test (same worker, same options) whose targets to export together with this one,
    `together=(...)` more targets.
    """
    from edgekit import export
    from edgekit.errors import ExportFailures
    from edgekit.targets import get_target

    def key_of(model, target, options):
        return (model, target, tuple(sorted(options.items())))

    def siblings(model: str, target: str, share_with: str | None) -> list[str]:
        items = request.session.items
        running = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        current = next((i for i in items if i.nodeid == running), None)
        names = [target]
        function = share_with or (current.originalname if current is not None and hasattr(current, "callspec") else None)
        if function is None:
            return names
        for item in items:
            params = getattr(item, "callspec", None)
            if params is None or item.originalname != function:
                continue
            if params.params.get("model", "mobilenet_v2") == model and "target" in params.params:
                if params.params["target"] not in names:
                    names.append(params.params["target"])
        return names

    def get(model: str, target: str, share_with: str | None = None, together: tuple[str, ...] = (), **options):
        key = key_of(model, target, options)
        if key not in _EXPORTS:
            wanted = dict.fromkeys([*siblings(model, target, share_with), *together])
            todo = [t for t in wanted if key_of(model, t, options) not in _EXPORTS
                    and (t == target or get_target(t).unavailable_reason() is None)]
            out = tmp_path_factory.mktemp(f"{model}-{target}")
            if len(todo) == 1:
                try:
                    _EXPORTS[key] = export(model, target, out=out, progress=False, **options)
                except Exception as exc:  # cached like a result, raised to every test that asks
                    _EXPORTS[key] = exc
            else:
                try:
                    done, failed = export(model, todo, out=out, progress=False, **options), {}
                except ExportFailures as exc:
                    done, failed = exc.artifacts, exc.errors
                for name, result in {**done, **failed}.items():
                    _EXPORTS[key_of(model, name, options)] = result
        result = _EXPORTS[key]
        if isinstance(result, BaseException):
            raise result
        return result

    return get
