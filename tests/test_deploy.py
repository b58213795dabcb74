"""The deployment files (Dockerfile, compose.yaml, deploy/) mean what docs/shared-gateway.md says, without Docker:
they parse; every CFAI_* / CLOUDFLARE_* variable they set is one cfai reads (so renaming a setting fails here);
every cfai command they run exists; the health checks and probes use the real health path and port, and the
Dockerfile's HEALTHCHECK and CMD work against a real `cfai serve` once the documented first key exists; nginx
streams; secrets stay out of the committed files."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # pyyaml: the test extra; no stubs installed
from typer.testing import CliRunner

from cfai_cli.cli.app import app
from cfai_cli.core.blobs import parse_s3_url
from cfai_cli.server.routes.health import HEALTH_PATHS
from cfai_cli.settings import Settings, load_settings
from tests.servers import free_port, stop_server, wait_for_health

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
KUBE: list[dict[str, Any]] = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if d]
NGINX = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
GUIDE = (ROOT / "docs" / "shared-gateway.md").read_text(encoding="utf-8")



def dockerfile(instruction: str) -> list[str]:
    """The arguments of every `instruction` line of the Dockerfile's last stage, continuation lines joined."""
    last_stage = DOCKERFILE[DOCKERFILE.rindex("\nFROM "):].replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{instruction}\s+(.*)$", last_stage, re.M)]


def dockerfile_env() -> dict[str, str]:
    return {name: value for line in dockerfile("ENV") for name, value in
            (part.split("=", 1) for part in shlex.split(line))}


def kube(kind: str) -> dict[str, Any]:
    (found,) = [d for d in KUBE if d["kind"] == kind]
    return found


def pod_spec() -> dict[str, Any]:
    return dict(kube("Deployment")["spec"]["template"]["spec"])


def cfai_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the cfai image (the replicas and the one-shot migration)."""
    return {name: s for name, s in COMPOSE["services"].items() if s.get("image") == "cfai:local"}


def replicas() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in cfai_services().items() if "command" not in s}


def env_file_example(path: str) -> dict[str, str]:
    """The variables a compose env_file's committed example sets, commented-out ones included."""
    text = (ROOT / f"{path}.example").read_text(encoding="utf-8")
    return dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))


def compose_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for service in COMPOSE["services"].values():
        for path in service.get("env_file", []):
            env.update(env_file_example(path))
        env.update({k: str(v) for k, v in service.get("environment", {}).items()})
    return env


def kube_environment() -> dict[str, str]:
    env = {**kube("Secret")["stringData"], **kube("ConfigMap")["data"]}
    for container in pod_spec()["containers"] + pod_spec()["initContainers"]:
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def read_by_cfai(env: Mapping[str, str]) -> set[str]:
    """The variables of `env` that set something when cfai loads its settings (as `cfai config show` reports)."""
    settings = load_settings(environ=env, use_file=False)
    return {name for origin in settings.origins.values() for name in re.findall(r"\$([A-Z0-9_]+)", origin)}


@pytest.mark.parametrize("source", ["compose.yaml", "deploy/kubernetes.yaml", "Dockerfile"])
def test_every_cfai_variable_set_is_one_cfai_reads(source: str) -> None:
    env = {"compose.yaml": compose_environment, "deploy/kubernetes.yaml": kube_environment,
           "Dockerfile": dockerfile_env}[source]()
    ours = {k: v for k, v in env.items() if k.startswith(("CFAI_", "CLOUDFLARE_"))}
    assert ours, f"{source} sets no cfai variable"  # the parsing above found them
    read = read_by_cfai(ours)
    assert set(ours) == read, f"{source} sets variables cfai does not read: {sorted(set(ours) - read)}"


def test_the_variable_check_catches_a_renamed_setting() -> None:
    assert read_by_cfai({"CFAI_COORDINATION_URL": "redis://r:6379/0"}) == {"CFAI_COORDINATION_URL"}
    assert read_by_cfai({"CFAI_COORDINATION_URI": "redis://r:6379/0"}) == set()


def cfai_commands() -> list[list[str]]:
    """Every cfai command line the deployment files and the guide run."""
    commands = [json.loads(dockerfile("CMD")[0])]
    commands += [s["command"] for s in cfai_services().values() if "command" in s]
    commands += [c["command"] for c in pod_spec()["containers"] + pod_spec()["initContainers"]]
    for code in re.findall(r"```bash\n(.*?)```", GUIDE, re.S):  # the guide's shell lines that run cfai
        for line in re.findall(r"^(?:\S+=\S+ )*(cfai \S.*)$", code, re.M):
            words = shlex.split(line, comments=True)
            ends = [i for i, w in enumerate(words) if w in (">", "<", "|", "&&", ";")]
            commands.append(words[:ends[0]] if ends else words)
    compose_text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    commands += [shlex.split(m) for m in re.findall(r"(cfai keygen [^\n#`]*)", GUIDE + DOCKERFILE + compose_text)]
    return commands


def test_every_cfai_command_they_run_exists() -> None:
    commands = cfai_commands()
    assert ["cfai", "db", "migrate"] in commands and ["cfai", "keygen", "--name", "admin", "--scopes", "admin"] \
        in commands
    runner = CliRunner()
    for command in commands:
        assert command[0] == "cfai", command
        # Every option given must exist too: parse it against --help of the (sub)command.
        done = runner.invoke(app, [*command[1:], "--help"])
        assert done.exit_code == 0, (command, done.output)


def test_the_dockerfile_healthcheck_and_the_probes_use_the_health_route() -> None:
    (healthcheck,) = dockerfile("HEALTHCHECK")
    code = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", code[-1])
    assert url and url.group(2) in HEALTH_PATHS
    assert dockerfile("EXPOSE") == [url.group(1)]
    cmd = json.loads(dockerfile("CMD")[0])
    assert cmd[cmd.index("--port") + 1] == url.group(1) and cmd[cmd.index("--host") + 1] == "0.0.0.0"

    (container,) = pod_spec()["containers"]
    assert container["command"] == cmd  # the image's own CMD, spelt out
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in HEALTH_PATHS and ports[get["port"]] == int(url.group(1))
    for service in replicas().values():
        assert "healthcheck" not in service  # the image's HEALTHCHECK, not a copy that could drift
        assert service["expose"] == [url.group(1)]


def test_the_kubernetes_pod_runs_unprivileged_on_scratch_volumes() -> None:
    spec = pod_spec()
    assert kube("Deployment")["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == int(dockerfile("USER")[0].split(":")[0]) != 0
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"] + spec["initContainers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "memory" in container["resources"]["limits"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert {dockerfile_env()["CFAI_HOME"], "/tmp"} <= set(mounts)
        assert all("emptyDir" in volumes[name] for name in mounts.values())
        assert {"secretRef": {"name": kube("Secret")["metadata"]["name"]}} in container["envFrom"]
    service = kube("Service")["spec"]
    assert service["selector"] == kube("Deployment")["spec"]["selector"]["matchLabels"]


def test_compose_runs_two_replicas_started_after_healthy_backends() -> None:
    services = COMPOSE["services"]
    assert sorted(replicas()) == ["cfai-a", "cfai-b"]
    assert all(s["build"] == "." for s in cfai_services().values())  # one image, built from the checkout
    for name, service in replicas().items():
        needs = service["depends_on"]
        assert {needs[b]["condition"] for b in ("postgres", "redis")} == {"service_healthy"}, name
        assert needs["migrate"]["condition"] == needs["minio-init"]["condition"] == "service_completed_successfully"
        assert service["read_only"] is True
    for backend in ("postgres", "redis", "minio"):
        assert services[backend]["healthcheck"]["test"][0] == "CMD", backend
    env = compose_environment()
    assert env["CFAI_COORDINATION_URL"].startswith("redis://redis:")
    assert f"@postgres:5432/{services['postgres']['environment']['POSTGRES_DB']}" in env["CFAI_STORE_URL"]
    lb = services["lb"]
    assert {lb["depends_on"][name]["condition"] for name in replicas()} == {"service_healthy"}
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]


def test_the_replicas_config_file_is_valid_and_names_the_bucket_minio_init_makes(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text((ROOT / "deploy" / "cfai.toml").read_text(encoding="utf-8"))
    blobs = load_settings(environ={"CFAI_HOME": str(tmp_path)}).blobs
    assert blobs.url and blobs.endpoint == "http://minio:9000"  # http:// is what lets cfai speak plain HTTP to MinIO
    bucket, prefix = parse_s3_url(blobs.url)
    script = COMPOSE["services"]["minio-init"]["command"][0]
    assert f"mc mb --ignore-existing local/{bucket}\n" in script
    assert f"--prefix {prefix}/images/ " in script  # the lifecycle backstop covers images only, not batch files
    for service in cfai_services().values():
        assert f"./deploy/cfai.toml:{dockerfile_env()['CFAI_HOME']}/config.toml:ro" in service["volumes"]


def test_secrets_stay_out_of_the_committed_files() -> None:
    ignored = [line for line in (ROOT / ".gitignore").read_text().splitlines() if line and not line.startswith("#")]
    secret = re.compile(r"TOKEN|PASSWORD|SECRET|STORE_URL")
    for name, service in COMPOSE["services"].items():
        for variable, value in service.get("environment", {}).items():
            assert not secret.search(variable) and not re.search(r"://[^/@\s]*:[^/@\s]*@", str(value)), (name, variable)
        for path in service.get("env_file", []):
            assert any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f"{path} is not git-ignored"
            for variable, value in env_file_example(path).items():  # placeholders only
                assert not secret.search(variable) or "replace-me" in value, (path, variable)
    for variable, value in kube("Secret")["stringData"].items():
        assert "replace-me" in value, variable  # placeholders only: the real Secret is made outside git
    assert not secret.search(" ".join(kube("ConfigMap")["data"]))
    config = re.sub(r"#.*", "", (ROOT / "deploy" / "cfai.toml").read_text(encoding="utf-8"))  # committed: no secret
    assert not re.search(r"api_token|api_key|password|secret|://[^/@\s]*@", config, re.I)


def nginx_block(name: str) -> str:
    """The text of nginx.conf's block opened by `name`, comments removed."""
    start = NGINX.index(name)
    depth = 0
    for end in range(NGINX.index("{", start), len(NGINX)):
        depth += {"{": 1, "}": -1}.get(NGINX[end], 0)
        if depth == 0:
            return re.sub(r"#.*", "", NGINX[start:end])
    raise AssertionError(f"{name}: no closing brace")


def test_nginx_streams_to_both_replicas() -> None:
    upstream = nginx_block("upstream cfai")
    assert sorted(re.findall(r"^\s*server\s+([\w-]+):(\d+)", upstream, re.M)) == [
        (name, service["expose"][0]) for name, service in sorted(replicas().items())]
    location = nginx_block("location /")
    directives = dict(re.findall(r"^[ \t]*(\w+)[ \t]+([^;\n]*);", location, re.M))
    assert directives["proxy_pass"] == "http://cfai"
    assert directives["proxy_buffering"] == "off"  # SSE: each event as it is written
    assert directives["proxy_http_version"] == "1.1"
    assert int(directives["proxy_read_timeout"].removesuffix("s")) > Settings.timeout  # cfai's upstream timeout
    (body,) = re.findall(r"client_max_body_size\s+(\d+)m;", NGINX)
    assert int(body) >= max(Settings.max_file_mb, Settings.max_body_mb)  # cfai's own 413s answer first
    listen = re.search(r"^\s*listen\s+(\d+);", NGINX, re.M)
    assert listen and COMPOSE["services"]["lb"]["ports"][0].endswith(f":{listen.group(1)}")


def docker_included(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching pattern wins; a pattern matching
    a parent directory matches what is inside it)."""
    parts = path.split("/")
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatch("/".join(parts[:n]), cleaned) for n in range(1, len(parts) + 1)):
            included = negated
    return included


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_secret() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [src for line in re.findall(r"^COPY\s+(?!--from)(.*)$", DOCKERFILE, re.M) for src in line.split()[:-1]]
    assert "cfai_cli" in copied
    for src in [*copied, "cfai_cli/server/ui/app.js", "cfai_cli/emulator/catalogue.py"]:
        assert (ROOT / src).exists() and docker_included(src, patterns), src
    for kept_out in (".venv/bin/python", ".git/config", "deploy/cfai.env", "tests/test_deploy.py",
                     "cfai_cli/__pycache__/app.cpython-312.pyc"):
        assert not docker_included(kept_out, patterns), kept_out


@pytest.fixture
def image_command(cfai_home: Path) -> Iterator[tuple[list[str], dict[str, str], int]]:
    """The Dockerfile's CMD on a free port (offline, as the guide suggests for a first try) and its environment."""
    port = free_port()
    cmd = [sys.executable, "-m", "cfai_cli", *json.loads(dockerfile("CMD")[0])[1:]]
    cmd[cmd.index("--port") + 1] = str(port)
    yield cmd, {**os.environ, "CFAI_OFFLINE": "1"}, port


def test_the_image_command_starts_once_the_first_key_exists(
        image_command: tuple[list[str], dict[str, str], int]) -> None:
    cmd, env, port = image_command
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 3 and "cfai keygen" in refused.stderr  # off loopback, no key: no server

    (keygen,) = set(re.findall(r"docker compose run --rm cfai-a (cfai keygen --name admin [^\n#`]*)", GUIDE))
    minted = subprocess.run([sys.executable, "-m", "cfai_cli", *shlex.split(keygen)[1:]], capture_output=True,
                            text=True, env=env, timeout=60, check=True)
    assert minted.stdout.startswith("sk-")

    (healthcheck,) = dockerfile("HEALTHCHECK")
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    probe = [sys.executable if probe[0] == "python" else probe[0], *probe[1:-1],
             probe[-1].replace(":8000/", f":{port}/")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_health(proc, port)
        assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    finally:
        stop_server(proc)
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0  # nothing listens: unhealthy
