"""The API as an independent grpcio client meets it: reflection, health by name, paths."""

import subprocess

import grpc
import pytest

import stackproc
from conftest import STACKPROCD, stack, write_tiff

# grpc.reflection.v1alpha.ServerReflectionRequest{list_services: "*"} (field 7), by hand:
# Debian ships no Python reflection package.
LIST_SERVICES = b"\x3a\x01*"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def list_services(target):
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_stream(REFLECTION)
        return b"".join(call(iter([LIST_SERVICES]), timeout=10))


def test_reflection_follows_the_flag(start_server):
    with pytest.raises(grpc.RpcError) as off:
        list_services(start_server().target)
    assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert b"stackproc.v1.StackProcessor" in list_services(start_server("--reflection").target)


def test_reflection_is_refused_with_tokens(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice alice-token-0123456789\n")
    run = subprocess.run([STACKPROCD, "--listen", "127.0.0.1:0", "--data-root", tmp_path,
                          "--auth-token-file", tokens, "--reflection"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "--reflection cannot check tokens" in run.stderr


@pytest.mark.parametrize("service", ["", "stackproc.v1.StackProcessor"])
def test_health_by_service_name(server, service):
    # grpc.health.v1.HealthCheckRequest{service} -> HealthCheckResponse{status: SERVING (1)}
    request = bytes([0x0A, len(service)]) + service.encode() if service else b""
    with grpc.insecure_channel(server.target) as channel:
        assert channel.unary_unary("/grpc.health.v1.Health/Check")(request, timeout=10) == \
            b"\x08\x01"


def test_unknown_service_name_is_not_found(server):
    request = b"\x0a\x04nope"
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            channel.unary_unary("/grpc.health.v1.Health/Check")(request, timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("input,output,says", [
    ("a" * 300 + ".tif", "o.tif", "a name of 304 bytes"),              # input name too long
    ("in.tif", "o" * 250 + ".tif", "room is kept for its temporary name"),  # output's name
    ("d/" * 3000 + "in.tif", "o.tif", "longer than the 4095 a path may have"),
    ("in.tif", "d/" * 3000 + "o.tif", "longer than the 4095 a path may have"),
    ("in.tif\0.png", "o.tif", "control characters"),
    ("in.tif", "o.tif\0/../../x", "control characters"),
    ("in\n.tif", "o.tif", "control characters"),
    ("in.tif", "o.png", "says none: NAME.tif"),  # once written as a TIFF under that name
])
def test_bad_paths_are_the_callers_errors(server, input, output, says):
    write_tiff(server.root / "in.tif", stack((1, 8, 8), "uint8"))
    with stackproc.Client(server.target) as client:
        with pytest.raises(stackproc.InvalidArgument, match=says) as e:
            client.submit(input, "gaussian", output=output)
    assert len(e.value.message) < 300  # a long path is cut short in the message
    assert client is not None and not list(server.root.glob("o*"))
