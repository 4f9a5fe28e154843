"""The build backend (PEP 517) behind `pip install ./client/python`: it needs nothing from the
network, so it works where only Debian's packages are reachable.

It writes the wheel itself (a zip of the package, its gRPC stubs and their .dist-info): no
setuptools or other build requirement to download. The stubs are generated from proto/ (the
repository's, or an sdist's copy) by Debian's `protoc` and `grpc_python_plugin` (packages
protobuf-compiler and protobuf-compiler-grpc), as the CMake build does. The version is the one
of the top-level CMakeLists.txt's project(); what the package needs is pyproject.toml's."""

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "stackproc"
PROTOS = ["stackproc/v1/operation.proto", "stackproc/v1/service.proto"]


def _source_root():
    """Where proto/ and CMakeLists.txt are: the repository (two folders up), or an sdist."""
    for root in (HERE, os.path.dirname(os.path.dirname(HERE))):
        if os.path.isdir(os.path.join(root, "proto", "stackproc")):
            return root
    raise RuntimeError(f"no proto/ beside {HERE} or two folders up: build from the repository")


def _version():
    with open(os.path.join(_source_root(), "CMakeLists.txt")) as f:
        match = re.search(r"project\(stackproc VERSION ([0-9.]+)", f.read())
    if not match:
        raise RuntimeError("CMakeLists.txt names no project(stackproc VERSION ...)")
    return match.group(1)


def _metadata():
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {_version()}",
             f"Summary: {project['description']}",
             f"Requires-Python: {project['requires-python']}"]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    for extra, deps in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {d}; extra == '{extra}'" for d in deps]
    return "\n".join(lines) + "\n"


def _stubs(into):
    """protoc's Python messages and gRPC stubs for proto/, in into/stackproc/v1."""
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError("generating the gRPC stubs needs protoc and grpc_python_plugin "
                           "(Debian: apt install protobuf-compiler protobuf-compiler-grpc)")
    subprocess.run([protoc, f"--proto_path={os.path.join(_source_root(), 'proto')}",
                    f"--python_out={into}", f"--grpc_python_out={into}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", *PROTOS], check=True)
    open(os.path.join(into, NAME, "v1", "__init__.py"), "w").close()


def _dist_info():
    return f"{NAME}-{_version()}.dist-info"


def _wheel_files():
    """(path in the wheel, bytes) of everything but the RECORD."""
    files = []
    for name in sorted(os.listdir(os.path.join(HERE, NAME))):
        if name.endswith(".py"):
            with open(os.path.join(HERE, NAME, name), "rb") as f:
                files.append((f"{NAME}/{name}", f.read()))
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, NAME, "v1"))
        _stubs(tmp)
        for name in sorted(os.listdir(os.path.join(tmp, NAME, "v1"))):
            with open(os.path.join(tmp, NAME, "v1", name), "rb") as f:
                files.append((f"{NAME}/v1/{name}", f.read()))
    info = _dist_info()
    files.append((f"{info}/METADATA", _metadata().encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: build_stackproc\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    return files


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


# The PEP 517 hooks.

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = os.path.join(metadata_directory, _dist_info())
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(_metadata())
    return _dist_info()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel = f"{NAME}-{_version()}-py3-none-any.whl"
    files = _wheel_files()
    record = f"{_dist_info()}/RECORD"
    lines = [_record_line(path, data) for path, data in files] + [f"{record},,"]
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            z.writestr(path, data)
        z.writestr(record, "\n".join(lines) + "\n")
    return wheel


def build_sdist(sdist_directory, config_settings=None):
    """This folder with proto/ and the CMakeLists.txt (for the version) copied in."""
    base = f"{NAME}-{_version()}"
    sdist = f"{base}.tar.gz"
    root = _source_root()
    with tarfile.open(os.path.join(sdist_directory, sdist), "w:gz") as tar:
        for name in ("pyproject.toml", "build_stackproc.py", NAME):
            tar.add(os.path.join(HERE, name), f"{base}/{name}",
                    filter=lambda t: None if "__pycache__" in t.name else t)
        tar.add(os.path.join(root, "proto", "stackproc"), f"{base}/proto/stackproc",
                filter=lambda t: t if t.isdir() or t.name.endswith(".proto") else None)
        tar.add(os.path.join(root, "CMakeLists.txt"), f"{base}/CMakeLists.txt")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = _metadata().encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return sdist
