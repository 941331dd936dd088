"""`edgekit.verify`: re-verifies an exported artifact from its manifest alone."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import WeightsError
from edgekit.integrity import check_artifact
from edgekit.manifest import manifest_card, manifest_contract, read_manifest
from edgekit.models import create_model, get_card, seeded, verification
from edgekit.manifest import sha256_file
from edgekit.models.weights import weights_path
from edgekit.parity import TOLERANCES, ParityReport, Tolerance, build_probes, check
from edgekit.runners import runner_for
from edgekit.runners.torch_runner import TorchRunner


def verify(directory: str | Path, data: str | Path | None = None, threads: int | None = None,
           require_signature: str | Path | None = None) -> ParityReport:
    """Rebuilds the PyTorch reference recorded in `directory/manifest.json` and checks the artifact again.

    Raises:
        WeightsError: the recorded weights are gone or their sha256 differs from the manifest's, or the artifact
            comes from an earlier version of an init edgekit builds (`edgekit.models.seeded`, `.verification`).
        InvalidSpecError: no manifest in `directory`.
        IntegrityError: the artifact changed since export, or its signature does not verify.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    check_artifact(directory, manifest, require_signature)
    card = manifest_card(manifest)
    reference = reference_model(manifest)
    contract = manifest_contract(manifest)
    probes = build_probes(card, contract, data)
    with TorchRunner(reference, contract, threads) as runner:
        reference_logits = runner.infer(probes.reference)
    tolerance = _recorded_tolerance(manifest)
    report = ParityReport(card.name, manifest["target"], probes.source)
    artifact = directory / manifest["artifact"]["file"]
    report.steps.append(check("re-verify", runner_for(artifact, contract, threads=threads), reference_logits, probes, tolerance))
    return report


def reference_model(manifest: dict):
    """The PyTorch model an artifact was exported from, rebuilt from its manifest with the same weights.

    Raises:
        WeightsError: the recorded weights are gone or their sha256 differs from the manifest's, or the artifact
            comes from an earlier version of an init edgekit builds (`edgekit.models.seeded`, `.verification`).
    """
    recorded = manifest["weights"]
    weights_file = None
    _check_init_version(manifest["model"], recorded)
    if recorded["source"] is not None:
        card = get_card(manifest["model"])
        weights_file = weights_path(card, recorded["source"])
        actual = sha256_file(weights_file)
        if actual != recorded["sha256"]:
            ours = recorded["source"] == verification.KEYWORD
            raise WeightsError(
                verification.mismatch(card, recorded, weights_file, actual) if ours
                else f"the weights at {weights_file} have sha256 {actual}, but the artifact was exported from weights "
                     f"with sha256 {recorded['sha256']}; refusing to compare it with other weights")
    return create_model(manifest["model"], weights=weights_file, num_classes=manifest_card(manifest).num_classes)


# Inits edgekit builds itself, by the weights source a manifest records: (module with its VERSION, name, why an
# earlier version cannot be rebuilt now).
_INITS = {
    None: (seeded, "seeded random init", "its BatchNorm statistics were drawn at random, so its logits hardly depended "
                                         "on the input"),
    verification.KEYWORD: (verification, "verification init", "its saved file differed from machine to machine (its "
                                                                "sha256 named a temporary file)"),
}


def _check_init_version(model: str, recorded: dict) -> None:
    """Refuses an artifact made from a version of an edgekit-built init that this edgekit no longer builds."""
    if recorded["source"] not in _INITS:
        return
    module, name, why = _INITS[recorded["source"]]
    version = (recorded.get("init") or {}).get("version")
    if version != module.VERSION:
        made = f"version {version}" if version else "an earlier version"
        raise WeightsError(f"{model} was exported from {made} of edgekit's {name}: {why}. This edgekit builds version "
                           f"{module.VERSION} and cannot rebuild the reference it was checked against. Export it again.")

def _recorded_tolerance(manifest: dict) -> Tolerance:
    steps = (manifest.get("parity") or {}).get("steps") or []
    if steps:
        return Tolerance(**steps[-1]["tolerance"])
    return TOLERANCES[manifest["precision"]]
