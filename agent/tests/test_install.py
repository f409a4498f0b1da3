"""The Raspberry Pi install: runtime wheels that need no compiler, and agent/install/install-pi.sh.

The pure-wheel proof asks pip's default package index (or FIELDLINK_PIP_INDEX when set) which files
`pip download --only-binary=:all:` would take for a 32-bit and a 64-bit Raspberry Pi, ignoring this
machine's pip configuration (local mirrors and wheel folders). Without network it skips, except under CI
(env var CI set), where it fails. The installer runs into a staging root (--root): no user, no systemctl.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "agent" / "install" / "install-pi.sh"
UNIT = REPO / "agent" / "install" / "fieldlink.service"
EXAMPLE = REPO / "agent" / "examples" / "site.toml"
INDEX = os.environ.get("FIELDLINK_PIP_INDEX")  # None: pip's own default index
OUTBOX = "/var/lib/fieldlink/outbox.sqlite"

# (pip --platform, what runs it): the wheel tags pip accepts on those boards.
PI_PLATFORMS = [
    ("linux_armv7l", "Raspberry Pi OS 32-bit, Pi 2/3/4/5"),
    ("linux_armv6l", "Raspberry Pi OS 32-bit, Pi Zero / Pi 1"),
    ("manylinux2014_aarch64", "Raspberry Pi OS 64-bit"),
]


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _name(requirement: str) -> str:
    """The normalised project name of a requirement string such as "paho-mqtt==2.1.0"."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _no_ci_skip(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------------------------
# Runtime dependencies resolve to pure-Python wheels on the Pi


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pip-cache")


@pytest.fixture(scope="module")
def index_reachable(pip_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The index answers (a pure wheel we know exists downloads), else skip (fail under CI)."""
    probe = _pip_download(["pyserial==3.5"], "linux_armv7l", tmp_path_factory.mktemp("probe"), pip_cache)
    if probe.returncode != 0:
        _no_ci_skip("package index %s not reachable: %s" % (INDEX or "(pip default)", probe.stderr[-500:]))
    return INDEX or "(pip default)"


def _pip_download(requirements: list[str], platform: str, dest: Path,
                  cache: Path) -> subprocess.CompletedProcess:
    """`pip download --only-binary=:all:` for `platform`, CPython 3.11, with dependencies, from INDEX only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if os.environ.get("PIP_CERT"):
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--platform", platform,
           "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           "--cache-dir", str(cache), "--dest", str(dest), "--progress-bar", "off", *requirements]
    if INDEX:
        cmd[4:4] = ["--index-url", INDEX]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("platform, board", PI_PLATFORMS, ids=[p for p, _ in PI_PLATFORMS])
def test_runtime_dependencies_are_pure_wheels(platform: str, board: str, index_reachable: str,
                                              pip_cache: Path, tmp_path: Path) -> None:
    runtime = _pyproject()["project"]["dependencies"]
    result = _pip_download(runtime, platform, tmp_path, pip_cache)
    assert result.returncode == 0, "runtime deps do not resolve to wheels for %s (%s):\n%s" % (
        platform, board, result.stderr[-3000:])
    files = sorted(p.name for p in tmp_path.iterdir())
    print("%s (%s): %s" % (platform, board, ", ".join(files)))
    not_pure = []
    for name in files:
        parts = name[:-len(".whl")].split("-") if name.endswith(".whl") else []
        pure = len(parts) >= 5 and parts[-2:] == ["none", "any"] and set(parts[-3].split(".")) in (
            {"py3"}, {"py2", "py3"})
        if not pure:
            not_pure.append(name)
    assert not not_pure, "%s (%s) would need a compiler or a platform wheel for: %s" % (
        platform, board, ", ".join(not_pure))
    downloaded = {_name(n.split("-")[0]) for n in files}
    assert {_name(r) for r in runtime} <= downloaded, files


@pytest.mark.parametrize("platform", ["linux_armv7l", "linux_armv6l"])
def test_cbor2_has_no_wheel_for_32_bit_pi(platform: str, index_reachable: str, pip_cache: Path,
                                          tmp_path: Path) -> None:
    """Why the hot path uses protocols/cbor.py: the pinned cbor2 (a Rust extension) has no wheel there."""
    cbor2 = [r for r in _pyproject()["project"]["optional-dependencies"]["dev"] if _name(r) == "cbor2"]
    assert cbor2, "cbor2 is no longer a dev dependency; update this test"
    result = _pip_download(cbor2, platform, tmp_path, pip_cache)
    assert result.returncode != 0, "%s now has a wheel for %s: %s" % (
        cbor2[0], platform, sorted(p.name for p in tmp_path.iterdir()))
    assert "No matching distribution found for cbor2" in result.stderr, result.stderr[-2000:]


IMPORT_FUNCTIONS = ("import_module", "__import__")


def _imports(tree: ast.AST) -> set[str]:
    """Every absolute module name `tree` imports, including importlib.import_module("name")."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in IMPORT_FUNCTIONS):
            names.add(node.args[0].value)
    return names


def test_no_runtime_module_imports_cbor2() -> None:
    offenders = []
    scanned = 0
    for package in ("agent", "protocols"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            if "tests" in rel.parts or path.name.startswith("test_") or path.name == "conftest.py":
                continue
            scanned += 1
            imported = _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(rel)))
            if any(name == "cbor2" or name.startswith("cbor2.") for name in imported):
                offenders.append(str(rel))
    assert scanned > 20
    assert not offenders, "runtime modules import cbor2 (dev-only, no wheel on 32-bit Pi OS): %s" % offenders


# ---------------------------------------------------------------------------------------------------------
# agent/install/install-pi.sh in a staging root

DEV_FIELDLINK = Path(sys.executable).parent / "fieldlink"


def install(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                            timeout=180)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def staged(root: Path, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """The installer into `root` without a venv, checking configs with the dev venv's fieldlink."""
    return install("--root", root, "--no-venv", "--fieldlink", DEV_FIELDLINK, *args, check=check)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_staging_creates_the_tree_and_keeps_an_existing_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = staged(root).stdout
    config = root / "etc/fieldlink/fieldlink.toml"
    unit = root / "etc/systemd/system/fieldlink.service"
    assert config.is_file() and (root / "var/lib/fieldlink").is_dir() and unit.is_file()
    assert mode(root / "etc/fieldlink") == 0o750 and mode(config) == 0o640
    assert mode(root / "var/lib/fieldlink") == 0o700
    assert tomllib.loads(config.read_text())["outbox"]["path"] == OUTBOX
    assert unit.read_text() == UNIT.read_text()          # default prefix: the unit as shipped
    assert "OK (3 buses, 6 devices, 2 rules)" in out and "checked /etc/fieldlink/fieldlink.toml: valid" in out
    assert "sudo systemctl start fieldlink" in out        # a fresh example config is not started
    assert not (root / "opt").exists()                    # --no-venv

    edited = config.read_text().replace('id = "gw-07"', 'id = "gw-99"') + "# edited on site\n"
    config.write_text(edited)
    out = staged(root).stdout
    assert config.read_text() == edited
    assert "kept the existing /etc/fieldlink/fieldlink.toml" in out and "unchanged" in out


def test_installed_config_points_the_outbox_at_var_lib(tmp_path: Path) -> None:
    body = EXAMPLE.read_text()
    relative = tmp_path / "relative.toml"
    relative.write_text(body.replace('path = "%s"' % OUTBOX, 'path = "outbox.sqlite"   # next to me'))
    missing = tmp_path / "missing.toml"
    missing.write_text(re.sub(r"\[outbox\]\n(.*\n)*?\n", "", body, count=1))
    assert "[outbox]" not in missing.read_text()
    for source in (relative, missing):
        root = tmp_path / source.stem
        staged(root, "--config", source)
        installed = tomllib.loads((root / "etc/fieldlink/fieldlink.toml").read_text())
        assert installed["outbox"]["path"] == OUTBOX, source.name
        assert installed["devices"] == tomllib.loads(body)["devices"]


def test_invalid_config_is_not_enabled(tmp_path: Path) -> None:
    root = tmp_path / "root"
    bad = root / "etc/fieldlink/fieldlink.toml"
    bad.parent.mkdir(parents=True)
    bad.write_text("format = 1\n[gateway]\nsite = \"x\"\nhelth_interval = 5\n")
    result = staged(root, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "INVALID, the service was not enabled" in result.stdout
    assert "helth_interval" in result.stderr
    assert "skipped systemctl enable" not in result.stdout
    assert bad.read_text().startswith("format = 1\n[gateway]")


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = install("--root", root, "--dry-run").stdout
    assert not root.exists()
    assert "would run: python3 -m venv %s/opt/fieldlink" % root in out
    assert "--only-binary=:all:" in out
    assert "would write: %s/etc/fieldlink/fieldlink.toml" % root in out
    assert "dry run, nothing changed" in out


def test_uninstall_keeps_config_and_outbox(tmp_path: Path) -> None:
    root = tmp_path / "root"
    staged(root)
    venv = root / "opt/fieldlink"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/fieldlink").symlink_to("/opt/fieldlink/bin/fieldlink")
    (root / "var/lib/fieldlink/outbox.sqlite").write_bytes(b"packs")
    out = install("--root", root, "--uninstall").stdout
    assert not venv.exists() and not (root / "etc/systemd/system/fieldlink.service").exists()
    assert not (root / "usr/local/bin/fieldlink").is_symlink()
    assert (root / "etc/fieldlink/fieldlink.toml").is_file()
    assert (root / "var/lib/fieldlink/outbox.sqlite").read_bytes() == b"packs"
    assert "Kept: /etc/fieldlink/fieldlink.toml" in out


REQUIRED_UNIT_SETTINGS = {
    "User": "fieldlink", "SupplementaryGroups": "dialout", "Restart": "on-failure",
    "StateDirectory": "fieldlink", "ConfigurationDirectory": "fieldlink", "NoNewPrivileges": "yes",
    "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/fieldlink", "ProtectHome": "yes",
    "PrivateTmp": "yes", "ExecStart": "/opt/fieldlink/bin/fieldlink run /etc/fieldlink/fieldlink.toml",
}


def test_unit_file_settings() -> None:
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    for key, value in REQUIRED_UNIT_SETTINGS.items():
        assert settings.get(key) == value, key
    assert int(settings["TimeoutStopSec"]) >= 30        # bus threads (10 s) + flush + MQTT disconnect
    assert int(settings["RestartSec"]) >= 1
    assert "PrivateDevices" not in settings             # it would hide the serial ports


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    root, prefix = tmp_path / "root", tmp_path / "venv"
    staged(root, "--prefix", prefix)
    (prefix / "bin").mkdir(parents=True)
    stub = prefix / "bin/fieldlink"             # verify checks that ExecStart's program exists
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = root / "etc/systemd/system/fieldlink.service"
    assert "ExecStart=%s/bin/fieldlink run /etc/fieldlink/fieldlink.toml" % prefix in unit.read_text()
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "fieldlink.service" not in result.stderr, result.stderr


def test_staging_install_with_venv_takes_wheels_only(tmp_path: Path) -> None:
    """The whole install: a venv, FieldLink and its dependencies (--only-binary=:all:), the config check."""
    root = tmp_path / "root"
    result = install("--root", root, check=False)
    if result.returncode != 0:
        ran = [line for line in result.stdout.splitlines() if line.startswith("  + ")]
        if ran and " -m pip install " in ran[-1]:
            _no_ci_skip("pip could not install from the configured index: %s" % result.stderr[-500:])
        pytest.fail(result.stdout + result.stderr)
    venv = root / "opt/fieldlink"
    assert "--only-binary=:all:" in result.stdout and "OK (3 buses, 6 devices, 2 rules)" in result.stdout
    assert os.readlink(root / "usr/local/bin/fieldlink") == "/opt/fieldlink/bin/fieldlink"
    version = subprocess.run([str(venv / "bin/fieldlink"), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("fieldlink "), version
    listed = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=freeze",
                             "--disable-pip-version-check"], capture_output=True, text=True, check=True)
    installed = {_name(line) for line in listed.stdout.split()} - {"pip", "setuptools", "wheel"}
    assert installed == {"fieldlink"} | {_name(r) for r in _pyproject()["project"]["dependencies"]}
