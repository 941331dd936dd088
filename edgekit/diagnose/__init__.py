"""`edgekit diagnose`: where an artifact's error against PyTorch enters, layer by layer.

The PyTorch reference is rebuilt from the artifact's manifest (as `edgekit verify` does). Both run
on the same images; every module's output in PyTorch is compared with the artifact tensor that
shows it (ONNX Runtime with the intermediate tensors as outputs, the TFLite interpreter with all
tensors preserved). See `report` for the metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.diagnose.report import Accumulator, LayerError, Report, _db

__all__ = ["SUPPORTED", "Report", "diagnose", "supported_targets"]

# Artifact suffix -> (module, tap class); any target whose artifact has one of these suffixes.
SUPPORTED = {".onnx": ("edgekit.diagnose.onnx", "OnnxTap"), ".tflite": ("edgekit.diagnose.tflite", "TFLiteTap")}
CHUNK = 4
WEIGHTED = ("Conv", "Linear")


def supported_targets() -> list[str]:
    """The registered targets whose artifacts `diagnose` can read."""
    from edgekit.targets import get_target, list_targets

    return [name for name in list_targets() if Path(get_target(name).artifact).suffix in SUPPORTED]


def diagnose(artifact_dir: str | Path, data: str | Path | None = None, threads: int | None = None) -> Report:
    """Compares every layer of the artifact in `artifact_dir` with the PyTorch model it was exported from.

    Args:
        artifact_dir: a folder written by `edgekit export` (parity-failed ones too).
        data: a folder of images; default: the bundled probe views (`edgekit.parity.probes`).
        threads: CPU threads for PyTorch and the artifact's runtime.

    Returns:
        A `Report` with one `LayerError` per matched layer, in network order.

    Raises:
        InvalidSpecError: not an artifact folder, or a target diagnose cannot read.
        IntegrityError: the artifact changed since export.
        WeightsError: the recorded weights are gone or differ.
        MissingBackendError: the artifact's runtime is not installed.
    """
    import importlib

    import torch

    from edgekit.integrity import check_artifact
    from edgekit.manifest import manifest_card, manifest_contract, read_manifest
    from edgekit.parity import build_probes
    from edgekit.diagnose.layers import Reference, match
    from edgekit.reverify import reference_model

    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    artifact = directory / manifest["artifact"]["file"]
    _check_supported(manifest, directory, artifact)
    check_artifact(directory, manifest)
    if threads:
        torch.set_num_threads(threads)
    card, contract = manifest_card(manifest), manifest_contract(manifest)
    module, cls = SUPPORTED[artifact.suffix]
    tap = getattr(importlib.import_module(module), cls)(artifact, contract, threads)
    reference = Reference(reference_model(manifest))
    probes = build_probes(card, contract, data, random_probes=0)
    sums, matches, unmatched = Accumulator(), None, []
    for start in range(0, len(probes.reference), CHUNK):
        ref = reference.run(probes.reference[start:start + CHUNK])
        art = _run(tap, probes.artifact[start:start + CHUNK], contract.batch)
        if matches is None:
            matches, unmatched = match(tap.tensors, reference, ref, art)
        for pair in matches:
            sums.add(pair.point, ref[pair.point], art[pair.tensor.name])
    report = _report(manifest, artifact, probes, reference, matches, unmatched, sums)
    report.notes += _notes(artifact)
    dead = [layer.module for layer in report.layers if layer.sqnr_db is None]
    if dead:
        report.notes.append(f"{len(dead)} layer(s) compute exactly zero on every image in PyTorch (a dead branch, such as "
                            "a BatchNorm with zero scale and shift), so they have no SQNR and are not ranked; the error "
                            f"they let through shows in the layer that reads them: {', '.join(dead)}")
    return report


def _check_supported(manifest: dict, directory: Path, artifact: Path) -> None:
    from edgekit.errors import InvalidSpecError
    from edgekit.targets import get_target

    if artifact.suffix in SUPPORTED:
        return
    target = manifest["target"]
    message = f"diagnose cannot read {target} artifacts ({artifact.name})"
    source = _readable_source(target)
    if source is None:
        raise InvalidSpecError(f"{message}; supported targets: {', '.join(supported_targets())}")
    sibling = directory.parent / f"{manifest['model']}-{source}"
    if _same_export(manifest, sibling, source):
        fix = f"run: edgekit diagnose {sibling}"
    else:
        same = "weights and calibration" if get_target(source).calibrated else "weights"
        fix = f"export {source} with the same {same} (edgekit export {manifest['model']} --target {source} ...) and diagnose that folder"
    raise InvalidSpecError(f"{message}. It is converted from {source}'s {get_target(source).artifact}, which diagnose "
                           f"reads: {fix}")


def _readable_source(target: str) -> str | None:
    """The readable target whose steps begin `target`'s chain (openvino-int8 converts onnx-int8's file), or None."""
    from edgekit.targets import get_target

    steps = get_target(target).steps
    sources = [name for name in supported_targets() if steps[:len(get_target(name).steps)] == get_target(name).steps]
    return max(sources, key=lambda name: len(get_target(name).steps), default=None)


def _same_export(manifest: dict, sibling: Path, target: str) -> bool:
    """Whether `sibling` holds `target` exported from the same weights with the same calibration as `manifest`."""
    from edgekit.errors import EdgekitError
    from edgekit.manifest import read_manifest

    if not (sibling / "manifest.json").is_file():
        return False
    try:
        other = read_manifest(sibling)
    except EdgekitError:
        return False
    return other.get("target") == target and all(other.get(key) == manifest.get(key)
                                                  for key in ("model", "weights", "calibration", "export"))


def _run(tap, images: np.ndarray, batch: int | None) -> dict[str, np.ndarray]:
    """The artifact's tensors for `images`, fed `batch` at a time (the last group padded), stacked."""
    from edgekit.runners.base import fixed_batches

    outputs = [{name: value[:count] for name, value in tap.run(group).items()}
               for group, count in fixed_batches(images, batch or len(images))]
    return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}


def _report(manifest, artifact, probes, reference, matches, unmatched, sums: Accumulator) -> Report:
    matched = {pair.point for pair in matches}
    # A dead point (reference zero on every image) has no ratio; it passes none on, and what error it lets through
    # is measured where it is read.
    dead = {point for point in matched if sums.dead(point)}
    nsr = {point: 0.0 if point in dead else sums.nsr(point) for point in matched}
    layers = []
    for index, pair in enumerate(matches):
        point = reference.points[pair.point]
        modules = reference.span(pair.point, matched)
        inbound = _input_nsr(reference, pair.point, nsr, {})
        added = nsr[pair.point] - inbound
        live = pair.point not in dead
        layers.append(LayerError(
            index=index, module=_layer_name(reference, modules, pair.point), modules=modules,
            kind="+".join(reference.points[m].kind for m in modules), shape=list(point.shape),
            artifact_tensor=pair.tensor.name, artifact_op=pair.tensor.op, matched_by=pair.by,
            sqnr_db=sums.sqnr_db(pair.point) if live else None,
            relative_error=float(np.sqrt(nsr[pair.point])) if live else None,
            cosine=sums.cosine(pair.point) if live else None, input_sqnr_db=_db(inbound),
            added_db=_db(added) if live and added > 0 else None,
            drop_db=_db(inbound) - sums.sqnr_db(pair.point) if live and inbound > 0 else None))
    weighted = [name for name, p in reference.points.items() if p.kind.startswith(WEIGHTED)]
    covered = {m for layer in layers for m in layer.modules}
    return Report(
        model=manifest["model"], target=manifest["target"], artifact=str(artifact), probes=probes.source.split(" + ")[0],
        images=len(probes.reference), layers=layers, unmatched_tensors=[t.name for t in unmatched],
        unmatched_modules=[name for name in weighted if name not in covered],
        coverage={"weighted": len(weighted), "matched": len([n for n in weighted if n in covered]),
                  "layers": len(layers), "by_name": sum(layer.matched_by == "name" for layer in layers)})


def _layer_name(reference, modules: list[str], point: str) -> str:
    """The convolution or linear module a fused layer computes, else the point itself."""
    return next((m for m in modules if reference.points[m].kind.startswith(WEIGHTED)), point)


def _input_nsr(reference, name: str, nsr: dict[str, float], memo: dict[str, float]) -> float:
    """The largest noise-to-signal ratio among the matched points that `name` reads (0 at the exact input)."""
    if name in memo:
        return memo[name]
    worst = 0.0
    for source in reference.points[name].inputs:
        worst = max(worst, nsr[source] if source in nsr else _input_nsr(reference, source, nsr, memo))
    memo[name] = worst
    return worst


def _notes(artifact: Path) -> list[str]:
    if artifact.suffix == ".onnx":
        return ["Intermediate tensors are graph outputs here, so ONNX Runtime fuses fewer nodes than in the deployed "
                "model; the figures are those of that run."]
    return ["The TFLite built-in kernels ran, not XNNPACK (a delegate hides intermediate tensors); the figures are "
            "those of that run.",
            "TFLite tensor names (from onnx2tf) carry no PyTorch name: layers are paired with modules by shape and "
            "value (cosine on the first images)."]
