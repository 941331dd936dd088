"""The `diagnose` subcommand: parse, call `edgekit.diagnose.diagnose`, print the table or JSON, write the files."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.errors import InvalidSpecError

DEFAULT_OUT = "edgekit-diagnose"


def add_parser(commands) -> None:
    """Registers `edgekit diagnose` on the main parser's subparsers."""
    diagnose = commands.add_parser("diagnose", help="layer-by-layer error of an int8/fp16 artifact against PyTorch: "
                                                    "which layers the error enters at")
    diagnose.add_argument("directory", metavar="ARTIFACT_DIR", help="a folder written by 'edgekit export' (ONNX or TFLite)")
    diagnose.add_argument("--data", default=None, help="images to compare on (default: the bundled probe views)")
    diagnose.add_argument("--out", default=None, help=f"folder for diagnose.json and diagnose.png, outside the artifact "
                                                      f"folder (default: {DEFAULT_OUT}/<artifact folder name>)")
    diagnose.add_argument("--top", type=int, default=10, help="layers to list, worst first (default 10)")
    diagnose.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch and the runtime")
    diagnose.add_argument("--json", action="store_true", help="print JSON instead of a table")
    diagnose.set_defaults(handler=run)


def run(args) -> int:
    """Handler of `edgekit diagnose`."""
    from edgekit.diagnose import diagnose

    directory = Path(args.directory)
    out = _out_folder(directory, args.out)
    report = diagnose(directory, data=args.data, threads=args.threads)
    out.mkdir(parents=True, exist_ok=True)
    report.files = {"json": str(out / "diagnose.json"), "plot": str(out / "diagnose.png")}
    report.plot(out / "diagnose.png")
    (out / "diagnose.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table(args.top))
    return 0


def _out_folder(directory: Path, out: str | None) -> Path:
    folder = Path(out) if out else Path(DEFAULT_OUT) / directory.resolve().name
    inside = folder.resolve().is_relative_to(directory.resolve())
    if inside:
        raise InvalidSpecError(f"--out {folder} is inside the artifact folder, whose files are hash-checked; "
                               "choose a folder outside it")
    return folder
