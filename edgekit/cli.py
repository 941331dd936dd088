"""The `edgekit` command: parses arguments, calls the Python API, maps errors to exit codes.

Exit codes: 0 success; 1 other failure; 2 bad usage or input (unknown name, bad option, unusable
weights, unreadable or altered files); 3 parity failed (or no
keep-float candidate met --max-drop); 4 a backend is missing; 130 and 143 when
interrupted by SIGINT (Ctrl-C) or SIGTERM, after removing unfinished work; 141 when stdout's reader
went away (`| head`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence

from edgekit.errors import EdgekitError, ExportFailures, MissingBackendError
from edgekit.pipeline.allocator import keep_freed_memory

TRACEBACK_ENV = "EDGEKIT_TRACEBACK"
# 128 + SIGPIPE, what a shell reports for a program killed writing to a closed pipe.
BROKEN_PIPE_EXIT = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI and returns its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    keep_freed_memory()
    try:
        code = args.handler(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except ExportFailures as exc:
        try:
            for artifact in exc.artifacts.values():
                print(artifact.file)
            sys.stdout.flush()
        except BrokenPipeError:  # the failure's exit code matters more than the closed pipe's
            _silence_stdout()
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except EdgekitError as exc:
        print(f"edgekit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            return _unexpected(exc)
        print("edgekit: error: this command needs PyTorch, which is not installed. Install it with: "
              "pip install 'edgekit[export]' (running an exported artifact with 'edgekit predict' does not need it)",
              file=sys.stderr)
        return MissingBackendError.exit_code
    except KeyboardInterrupt as exc:
        name = exc.args[0] if exc.args else "SIGINT"
        print(f"edgekit: interrupted ({name}); unfinished work was removed", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except BrokenPipeError:  # whoever read stdout stopped (`edgekit targets | head`): stop quietly, as cat does
        _silence_stdout()
        return BROKEN_PIPE_EXIT
    except Exception as exc:  # the last line of defence: one readable line instead of a traceback
        return _unexpected(exc)


def _silence_stdout() -> None:
    """Points stdout at /dev/null after its reader went away: Python's flush at exit would fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _unexpected(exc: BaseException) -> int:
    if os.environ.get(TRACEBACK_ENV):
        raise exc
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    place = f" at {where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where is not None else ""
    print(f"edgekit: error: unexpected {type(exc).__name__}: {exc}{place}. This is a bug in edgekit or in a "
          f"converter it called; set {TRACEBACK_ENV}=1 to see the traceback, and please report it", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgekit", description="Export reference image classifiers to edge formats, verified.")
    parser.add_argument("--version", action=_Version, help="print edgekit's version and the installed backends' versions")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    models = commands.add_parser("models", help="list the model zoo")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=_models)

    classify = commands.add_parser("classify", help="classify images with a zoo model in PyTorch (the reference)")
    classify.add_argument("model")
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    classify.add_argument("--weights", default="imagenet", help="'imagenet' (offline) or a checkpoint path")
    classify.add_argument("--num-classes", type=int, default=None)
    classify.add_argument("--topk", type=int, default=5)
    classify.add_argument("--json", action="store_true")
    classify.set_defaults(handler=_classify)

    export = commands.add_parser("export", help="export a model to a target, verifying every step")
    export.add_argument("model")
    export.add_argument("--target", required=True, action="append",
                        help="a target, a comma-separated list, 'all', a glob such as 'tflite-*', or a family such as "
                             "'tflite'; may be repeated; shared steps run once (see 'edgekit targets')")
    export.add_argument("--weights", default=None, help="'imagenet' (offline), a checkpoint path, or 'verification' "
                        "(edgekit's verification-only init, effnet_lite3-4 and b0); default: seeded random init, "
                        "or the verification init when an int8 target needs one")
    export.add_argument("--out", default="edgekit-out", help="output folder (default: edgekit-out)")
    export.add_argument("--num-classes", type=int, default=None, help="classifier size; replaces a checkpoint head of another size")
    export.add_argument("--calib", default=None, help="calibration images (folder) or preprocessed array (.npy)")
    export.add_argument("--calib-size", type=int, default=40, help="calibration samples (default 40)")
    export.add_argument("--data", default=None, help="probe images for verification (labelled by synset or folder)")
    export.add_argument("--input-size", type=int, default=None)
    export.add_argument("--batch", type=int, default=1)
    export.add_argument("--dynamic-batch", action="store_true")
    export.add_argument("--io-dtype", default="uint8", choices=["uint8", "int8", "float32"],
                        help="tflite-int8 input/output type (uint8: what MediaPipe and the Task Library accept)")
    export.add_argument("--no-verify", action="store_true", help="skip parity checks (the manifest says unverified)")
    export.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    export.add_argument("--timeout", type=float, default=1800.0, help="seconds each converter step may take")
    export.add_argument("--jobs", type=int, default=None, help="steps run side by side at most (default: 2)")
    export.add_argument("--keep-float", action="append", default=[], metavar="LAYERS|auto",
                        help="onnx-int8, openvino-int8, tflite-int8: PyTorch module names to keep in float "
                             "(comma-separated, may be repeated), or 'auto' with "
                             "--max-drop and --data: the fewest convolutions in float that meet the budget")
    export.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                        help="--keep-float auto: top-1 points the int8 model may lose on --data (exit 3 when "
                             "not even every convolution in float meets it)")
    _tolerance_options(export)
    _engine_options(export)
    export.set_defaults(handler=_export)

    engine = commands.add_parser("build-engine", help="build a TensorRT engine on this device from an ONNX artifact, verified")
    engine.add_argument("directory", metavar="ONNX_ARTIFACT_DIR", help="a folder written by 'edgekit export MODEL --target onnx'")
    precision = engine.add_mutually_exclusive_group(required=True)
    precision.add_argument("--fp16", action="store_const", const="fp16", dest="precision")
    precision.add_argument("--int8", action="store_const", const="int8", dest="precision")
    engine.add_argument("--out", default=None, help="output folder (default: beside the ONNX artifact)")
    engine.add_argument("--calib", default=None, help="--int8: calibration images (folder) or preprocessed array (.npy)")
    engine.add_argument("--calib-size", type=int, default=40)
    engine.add_argument("--data", default=None, help="probe images for verification")
    engine.add_argument("--fp32-layers", action="append", default=[],
                        help="comma-separated PyTorch module names to keep in FP32 (see check-fp16); may be repeated")
    engine.add_argument("--force", action="store_true")
    engine.add_argument("--timeout", type=float, default=1800.0)
    _signature_option(engine)
    _tolerance_options(engine)
    _engine_options(engine)
    engine.set_defaults(handler=_build_engine)

    verify = commands.add_parser("verify", help="re-verify an exported artifact from its manifest")
    verify.add_argument("directory")
    verify.add_argument("--data", default=None)
    verify.add_argument("--json", action="store_true")
    _signature_option(verify)
    verify.set_defaults(handler=_verify)

    sign = commands.add_parser("sign", help="sign an artifact folder with a private key (OpenSSF model-signing)")
    sign.add_argument("directory", metavar="ARTIFACT_DIR")
    sign.add_argument("--key", required=True, help="PEM elliptic-curve private key (openssl ecparam -name prime256v1 -genkey)")
    sign.add_argument("--password", default=None, help="the key's password, if it is encrypted")
    sign.set_defaults(handler=_sign)

    bench = commands.add_parser("bench", help="export (or reuse) targets and measure latency, size, memory, accuracy")
    bench.add_argument("model")
    bench.add_argument("--targets", action="append",
                       help="as for export: 'all' (the default), a comma-separated list, a glob such as 'onnx*', "
                            "or a family such as 'tflite'; may be repeated")
    bench.add_argument("--weights", default=None, help="as for export: 'imagenet' (offline), a checkpoint path, or "
                                                       "'verification'; default: the seeded random init")
    bench.add_argument("--data", default=None, help="labelled images for accuracy and parity")
    bench.add_argument("--runs", type=int, default=50, help="timed runs per artifact, after warm-up (default 50)")
    bench.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime (default 2)")
    bench.add_argument("--rounds", type=int, default=3,
                       help="time the runs in this many rounds, alternating the targets' order, so that every row is "
                            "timed over the same stretch of time (default 3)")
    bench.add_argument("--out", default="edgekit-bench", help="folder for the artifacts, bench.json and the plot; "
                                                               "verified artifacts of the same weights there are reused (default edgekit-bench)")
    bench.set_defaults(handler=_bench)

    fp16 = commands.add_parser("check-fp16", help="FP16 risk check on the CPU: layer ranges and emulated FP16 parity")
    fp16.add_argument("model")
    fp16.add_argument("--weights", default=None, help="as for export: 'imagenet', a checkpoint path, or 'verification'")
    fp16.add_argument("--data", default=None, help="images to check on (default: the bundled probe views)")
    fp16.add_argument("--num-classes", type=int, default=None, help="as for export: the checkpoint's class count")
    fp16.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fp16.set_defaults(handler=_check_fp16)

    predict = commands.add_parser("predict", help="run an exported artifact on images (use this on the device)")
    predict.add_argument("directory", metavar="ARTIFACT_DIR")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    predict.add_argument("--topk", type=int, default=5, help="classes to show per image (default 5)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _signature_option(predict)
    predict.set_defaults(handler=_predict)

    targets = commands.add_parser("targets", help="list export targets and whether each is available here")
    targets.add_argument("--json", action="store_true")
    targets.set_defaults(handler=_targets)

    from edgekit.diagnose.cli import add_parser as add_diagnose_command
    from edgekit.training.cli import add_commands as add_training_commands

    add_training_commands(commands)
    add_diagnose_command(commands)
    return parser


class _Version(argparse.Action):
    """`edgekit --version`: edgekit's version, then each backend's (or 'not installed')."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from edgekit import __version__
        from edgekit.manifest import tool_versions

        print(f"edgekit {__version__}")
        for name, version in tool_versions().items():
            if name != "edgekit":
                print(f"  {name:<16} {version or 'not installed'}")
        parser.exit()


def _signature_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--require-signature", default=None, metavar="PUBKEY",
                        help="refuse the artifact unless its folder is signed by this public key ('edgekit sign')")


def _sign(args: argparse.Namespace) -> int:
    from edgekit.integrity.signing import sign

    print(sign(args.directory, args.key, password=args.password))
    return 0


def _tolerance_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tolerance overrides (final step)")
    group.add_argument("--atol", type=float, default=None)
    group.add_argument("--rtol", type=float, default=None)
    group.add_argument("--min-cosine", type=float, default=None)
    group.add_argument("--min-top1", type=float, default=None, dest="min_top1_agreement")


def _tolerance(args: argparse.Namespace) -> dict[str, float]:
    """The tolerance overrides given on the command line."""
    keys = ("atol", "rtol", "min_cosine", "min_top1_agreement")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def _engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TensorRT engines")
    group.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace limit (default 2048)")
    group.add_argument("--timing-cache", default=None, help="timing cache file (default: one per GPU and TensorRT version)")
    group.add_argument("--max-batch", type=int, default=16, help="dynamic batch: the profile's max (default 16)")
    group.add_argument("--opt-batch", type=int, default=1, help="dynamic batch: the profile's opt (default 1)")


def _build_engine(args: argparse.Namespace) -> int:
    from edgekit.build_engine import build_engine

    artifact = build_engine(
        args.directory, args.precision, out=args.out, calib=args.calib, calib_size=args.calib_size, data=args.data,
        max_batch=args.max_batch, opt_batch=args.opt_batch, workspace_mb=args.workspace_mb,
        timing_cache=args.timing_cache, fp32_layers=tuple(n for n in ",".join(args.fp32_layers).split(",") if n),
        force=args.force, tolerance=_tolerance(args), timeout=args.timeout, require_signature=args.require_signature,
    )
    print(artifact.file)
    return 0


def _export(args: argparse.Namespace) -> int:
    import edgekit

    artifact = edgekit.export(
        args.model, ",".join(args.target), weights=args.weights, out=args.out, num_classes=args.num_classes,
        input_size=args.input_size, batch=args.batch, dynamic_batch=args.dynamic_batch, calib=args.calib,
        calib_size=args.calib_size, data=args.data, verify=not args.no_verify, force=args.force,
        io_dtype=args.io_dtype, tolerance=_tolerance(args), timeout=args.timeout, workspace_mb=args.workspace_mb,
        timing_cache=args.timing_cache, max_batch=args.max_batch, opt_batch=args.opt_batch, jobs=args.jobs,
        keep_float=",".join(args.keep_float), max_drop=args.max_drop,
    )
    for one in artifact.values() if isinstance(artifact, dict) else [artifact]:
        print(one.file)
    return 0


def _verify(args: argparse.Namespace) -> int:
    import edgekit

    report = edgekit.verify(args.directory, data=args.data, require_signature=args.require_signature)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        for step in report.steps:
            print(f"{'ok' if step.passed else 'FAILED'}  {step.artifact}: {step.summary()}")
            for failure in step.failures:
                print(f"  - {failure}")
    if not report.passed:
        print(f"edgekit: error: {args.directory} does not match its PyTorch reference: {report.describe_failure()}",
              file=sys.stderr)
    return 0 if report.passed else 3


def _targets(args: argparse.Namespace) -> int:
    from edgekit.availability import target_status

    rows = target_status()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = shutil.get_terminal_size((100, 24)).columns
    fixed = max(len(r["name"]) for r in rows) + len("available") + max(len(r["precision"]) for r in rows) + 6
    print(_table(("target", "available", "precision", "description"),
                 [(r["name"], "yes" if r["available"] else "no", r["precision"],
                   _clip(r["description"], max(20, width - fixed))) for r in rows]))
    caveats = [r for r in rows if r["caveat"]]
    if caveats:
        print("\nbefore you pick by name:")
        for r in caveats:
            print(textwrap.fill(f"{r['name']}: {r['caveat']}", width=max(40, width - 1), initial_indent="  ",
                                subsequent_indent="      "))
    missing = [r for r in rows if not r["available"]]
    if missing:
        print("\nunavailable here:")
        for r in missing:
            print(textwrap.fill(f"{r['name']}: {r['reason']}", width=max(40, width - 1), initial_indent="  ",
                                subsequent_indent="      "))
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def _models(args: argparse.Namespace) -> int:
    from edgekit.models import get_card, list_models, verification
    from edgekit.models.weights import offline_status

    rows = []
    for name in list_models():
        card = get_card(name)
        rows.append({
            "name": name,
            "aliases": list(card.aliases),
            "family": card.family,
            "input_size": card.input_size,
            "num_classes": card.num_classes,
            "params_m": round(card.params / 1e6, 2),
            "gmacs": round(card.macs / 1e9, 3),
            "imagenet_weights": offline_status(card),
            "verification_init": verification.SOURCES.get(name),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "family", "input", "params", "GMACs", "offline imagenet weights", "verification init")
    table = [(r["name"], r["family"], str(r["input_size"]), f"{r['params_m']:.2f}M", f"{r['gmacs']:.3f}", r["imagenet_weights"],
              f"from {r['verification_init']}" if r["verification_init"] else "-") for r in rows]
    print(_table(header, table))
    return 0


def _classify(args: argparse.Namespace) -> int:
    from edgekit.classify import classify_images

    results = classify_images(args.model, args.images, weights=args.weights, num_classes=args.num_classes, topk=args.topk)
    return _print_topk(results, args.json)


def _bench(args: argparse.Namespace) -> int:
    from edgekit.bench import bench, summary, table

    result = bench(args.model, ",".join(args.targets or ["all"]), weights=args.weights, data=args.data, runs=args.runs,
                   threads=args.threads, rounds=args.rounds, out=args.out)
    header, rows = table(result)
    print(f"{result.model}: {result.threads} threads, fp32 floor {result.matmul_gflops:.0f} GFLOP/s")
    print(_table(header, rows))
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    print(summary(result))
    return 0


def _check_fp16(args: argparse.Namespace) -> int:
    from edgekit.fp16 import check_fp16

    report = check_fp16(args.model, weights=args.weights, data=args.data, num_classes=args.num_classes)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.passed else 3
    worst = report.worst
    emulated = report.emulated["images"]
    print(f"{report.model}: {len(report.layers)} layers checked on {report.probes}")
    print(f"worst layer: {worst.name} ({worst.kind}) max |x| {worst.absmax:.4g} "
          f"({worst.absmax / 65504:.2%} of FP16 max), {worst.underflow:.2%} of values below FP16 normal range")
    for layer in report.flagged:
        for flag in layer.flags:
            print(f"  {layer.name}: {flag}")
    agreement = "n/a" if emulated["top1_agreement"] is None else f"{emulated['top1_agreement']:.1%}"
    print(f"emulated FP16 (CPU): cosine {emulated['cosine_mean']:.6f} (min {emulated['cosine_min']:.6f}), "
          f"top-1 agreement {agreement} of {emulated['decisive_probes']}, max |d| {emulated['max_abs']:.3g}")
    print("expected FP16 parity: " + ("passes" if report.passed else "FAILS: " + "; ".join(report.failures)))
    if report.keep_fp32():
        print("keep in FP32: " + ", ".join(report.keep_fp32()))
    return 0 if report.passed else 3


def _predict(args: argparse.Namespace) -> int:
    from edgekit.prediction import predict

    results = predict(args.directory, args.images, topk=args.topk, require_signature=args.require_signature)
    if not args.json and results and results[0]["artifact_status"] != "verified":
        print(f"warning: this artifact's manifest says {results[0]['artifact_status']!r}, not 'verified'", file=sys.stderr)
    return _print_topk(results, args.json)


def _print_topk(results: list[dict], as_json: bool) -> int:
    if as_json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(result["image"])
        for rank, guess in enumerate(result["topk"], start=1):
            print(f"  {rank}. {guess['name']:<32} {guess['probability']:7.2%}")
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
