"""The production stack's configuration, checked without Docker: every file against the schema or program that
reads it (the compose specification, Dagster's instance and workspace schemas, PostgreSQL's and Redis's own
parsers, hadolint), and every service's command and environment against the code it runs."""

import ast
import importlib
import itertools
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import click
import dagster as dg
import psycopg
import pytest
import redis
import sqlalchemy
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._core.test_utils import create_run_for_test
from dagster._core.workspace.config_schema import ensure_workspace_config
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dockerfile_parse import DockerfileParser
from dotenv import dotenv_values
from psycopg import pq

from cryptobt_pipelines.definitions import defs
from cryptobt_pipelines.defs.execution import EVENT_BATCH_SIZE
from cryptobt_pipelines.defs.run_tags import BACKTEST_RUN_TAGS, INGEST_RUN_TAGS, KIND_TAG, PRIORITY_TAG
from cryptobt_pipelines.settings import PROJECT_ROOT
from cryptobt_pipelines.warehouse.database import create_database, dagster_storage_url, drop_database
from cryptobt_pipelines.warehouse.servers import postgres_bin_dir, redis_server_binary

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
REPLICA_COMPOSE = PROJECT_ROOT / "deploy" / "replica" / "docker-compose.replica.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DAGSTER_YAML = PROJECT_ROOT / "dagster.yaml"
LOCAL_WORKSPACE = PROJECT_ROOT / "workspace.yaml"
HELM_VALUES = PROJECT_ROOT / "deploy" / "helm" / "values.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOWNSTREAM_ENV = PROJECT_ROOT / "deploy" / "replica" / "downstream.env.example"
PACKAGE = PROJECT_ROOT / "cryptobt_pipelines"

# Without these two, the code starts embedded servers inside its container instead of using the stack's.
SERVER_URLS = {"CRYPTOBT_DATABASE_URL", "CRYPTOBT_REDIS_URL"}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def compose_services(path: Path = COMPOSE) -> dict[str, dict]:
    return load_yaml(path)["services"]


def our_services() -> dict[str, dict]:
    """The services that run the project image (they build it)."""
    return {name: s for name, s in compose_services().items() if "build" in s}


def argv(command) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


# --- what the code reads --------------------------------------------------------------------------------


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def variables_the_code_reads() -> set[str]:
    """Every environment variable named in the package: os.environ.get / os.environ[...] / os.getenv,
    dg.EnvVar and env_or_default (defs/resources.py)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func in {"os.environ.get", "os.getenv", "dg.EnvVar", "EnvVar", "env_or_default"}:
                    if name := _string_arg(node):
                        names.add(name)
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                if isinstance(node.slice, ast.Constant):
                    names.add(node.slice.value)
    return names


def variables_the_instance_reads(config=None) -> set[str]:
    """The `env:` references in dagster.yaml."""
    config = load_yaml(DAGSTER_YAML) if config is None else config
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return {config["env"]}
        return set().union(*(variables_the_instance_reads(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(variables_the_instance_reads(v) for v in config))
    return set()


def test_the_code_scan_finds_the_variables_settings_reads():
    # Guards the scan itself: if it found nothing, every "is it read?" check below would be vacuous.
    assert {"CRYPTOBT_DATABASE_URL", "CRYPTOBT_REDIS_URL", "CRYPTOBT_HOME", "CRYPTOBT_LANDING", "DAGSTER_HOME",
            "CRYPTOBT_TIMESCALE", "CRYPTOBT_BINANCE_URL", "COINGECKO_API_KEY"} <= variables_the_code_reads()
    assert variables_the_instance_reads() == {"CRYPTOBT_DAGSTER_STORAGE_URL"}


# --- the image ------------------------------------------------------------------------------------------


def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def image_files() -> dict[PurePosixPath, Path]:
    """Where each COPY of the Dockerfile puts a file or folder of the repository in the image."""
    workdir = PurePosixPath("/")
    copied = {}
    for instruction in dockerfile().structure:
        if instruction["instruction"] == "WORKDIR":
            workdir = workdir / instruction["value"]
        elif instruction["instruction"] == "COPY":
            *sources, dest = [a for a in shlex.split(instruction["value"]) if not a.startswith("--")]
            target = workdir / dest
            for source in sources:
                into_folder = dest.endswith("/") or len(sources) > 1
                copied[target / PurePosixPath(source).name if into_folder and not source.endswith("/") else target] = (
                    PROJECT_ROOT / source)
    return copied


def bind_mounts(service: dict) -> dict[PurePosixPath, Path]:
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[PurePosixPath(target)] = PROJECT_ROOT / source
    return mounts


def file_in_container(path: str, service: dict) -> Path | None:
    """The repository file a container path of `service` holds (copied into the image or bind-mounted)."""
    wanted = PurePosixPath(path)
    for inside, outside in {**image_files(), **bind_mounts(service)}.items():
        if wanted == inside or inside in wanted.parents:
            return outside / wanted.relative_to(inside)
    return None


def image_env() -> dict[str, str]:
    return dockerfile().envs


def test_dockerfile_passes_hadolint_and_builds_a_non_root_python_image():
    lint = subprocess.run([str(Path(sys.executable).parent / "hadolint"), str(DOCKERFILE)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    parsed = dockerfile()
    assert parsed.baseimage in {"python:3.11-slim", "python:3.12-slim"}
    users = [i["value"] for i in parsed.structure if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"
    for source in image_files().values():
        assert source.exists(), f"the Dockerfile copies {source.relative_to(PROJECT_ROOT)}, which does not exist"
    # settings.PROJECT_ROOT is the folder above the package: sql/ and assets/ must be there in the image.
    copied = {p.relative_to(PROJECT_ROOT).as_posix().rstrip("/") for p in image_files().values()}
    assert {"pyproject.toml", "cryptobt_pipelines", "sql", "assets", "dagster.yaml"} <= copied
    assert any("pip install" in i["value"] and "-e ." in i["value"] for i in parsed.structure if i["instruction"] == "RUN")
    instance = file_in_container(f"{image_env()['DAGSTER_HOME']}/dagster.yaml", {})
    assert instance == DAGSTER_YAML, "the image's DAGSTER_HOME must hold the project's dagster.yaml"


# --- docker-compose.yml ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE, REPLICA_COMPOSE], ids=lambda p: p.name)
def test_compose_files_follow_the_compose_specification(path):
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_our_services_set_is_read_by_the_code_or_the_instance():
    readers = variables_the_code_reads() | variables_the_instance_reads()
    for name, service in our_services().items():
        unread = set(service.get("environment", {})) - readers
        assert not unread, f"compose service {name} sets {sorted(unread)}, which nothing reads (a typo?)"
    for name in image_env():
        assert name in readers or not name.startswith("CRYPTOBT_"), f"the Dockerfile sets {name}, which nothing reads"


def _runs_our_code(command: list[str]) -> bool:
    return command[0] == "cryptobt" or command[:2] == ["dagster", "code-server"] or command[:2] == ["dagster", "api"]


def test_every_service_gets_what_its_processes_read():
    instance_needs = {"DAGSTER_HOME"} | variables_the_instance_reads()
    for name, service in our_services().items():
        env = service.get("environment", {})
        command = argv(service["command"])
        needed = (SERVER_URLS | {"CRYPTOBT_HOME"} if _runs_our_code(command) else set())
        needed |= instance_needs if command[0].startswith("dagster") else set()
        missing = needed - {k for k, v in env.items() if v}
        assert not missing, f"compose service {name} ({' '.join(command[:3])}) needs {sorted(missing)}"
        if "DAGSTER_HOME" in env:
            assert env["DAGSTER_HOME"] == image_env()["DAGSTER_HOME"], f"{name}: DAGSTER_HOME is not the image's"


def interpolated(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against `env`."""

    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"{name} is required but not in .env.example")
        return rest or ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", one, str(value))


def test_env_example_holds_every_variable_the_compose_files_interpolate():
    def strings(node):
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        return [s for v in node for s in strings(v)] if isinstance(node, list) else [str(node)]

    example = dotenv_values(ENV_EXAMPLE)
    for path in (COMPOSE, REPLICA_COMPOSE):
        used = {name for s in strings(load_yaml(path)) for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", s)}
        assert used <= set(example), f"{path.name} uses {sorted(used - set(example))}, missing from .env.example"


def test_connection_urls_point_at_the_stack_servers():
    example = dotenv_values(ENV_EXAMPLE)
    services = compose_services()
    env = {k: interpolated(v, example) for k, v in services["code-server"]["environment"].items()}
    postgres = {k: interpolated(v, example) for k, v in services["timescaledb"]["environment"].items()}

    warehouse = urlsplit(env["CRYPTOBT_DATABASE_URL"])
    assert (warehouse.scheme, warehouse.hostname, warehouse.port) == ("postgresql", "timescaledb", 5432)
    assert (warehouse.username, unquote(warehouse.password)) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert warehouse.path == f"/{postgres['POSTGRES_DB']}"

    storage = urlsplit(env["CRYPTOBT_DAGSTER_STORAGE_URL"])
    assert storage.scheme == "postgresql+psycopg2", "DESIGN.md pitfall: psycopg 3 breaks dagster-postgres"
    assert (storage.hostname, storage.username) == ("timescaledb", postgres["POSTGRES_USER"])
    # The instance database is created at the server's first start.
    init_sql = [file_in_container(v.split(":")[1], services["timescaledb"]) for v in services["timescaledb"]["volumes"]
                if "/docker-entrypoint-initdb.d/" in v]
    assert any(f"CREATE DATABASE {storage.path.lstrip('/')} " in p.read_text() for p in init_sql)

    cache = urlsplit(env["CRYPTOBT_REDIS_URL"])
    assert (cache.scheme, cache.hostname, cache.port) == ("redis", "redis", 6379)
    redis_command = [interpolated(a, example) for a in argv(services["redis"]["command"])]
    assert redis_command[redis_command.index("--requirepass") + 1] == unquote(cache.password)


def console_command(name: str) -> click.Command:
    (script,) = entry_points(group="console_scripts", name=name)
    target = script.load()
    # Dagster's console scripts are plain functions around the click group its module calls `cli`.
    return target if isinstance(target, click.Command) else importlib.import_module(target.__module__).cli


def parse_command(command: list[str], service: dict) -> click.Context:
    """Parse `command` exactly as its CLI would (unknown commands or options, bad values and missing files all
    raise), with container paths replaced by the repository files the container holds."""
    args = []
    for arg in command[1:]:
        local = file_in_container(arg, service) if arg.startswith("/") else None
        args.append(str(local) if local else arg)
    cli, parent, path = console_command(command[0]), None, [command[0]]
    while isinstance(cli, click.Group):
        parent = click.Context(cli, info_name=path[-1], parent=parent)
        name, *args = args
        sub = cli.get_command(parent, name)
        assert sub is not None, f"`{' '.join(path)}` has no command {name!r}"
        cli, path = sub, [*path, name]
    return cli.make_context(path[-1], args, parent=parent)


def commands_in(services: dict[str, dict]):
    for name, service in services.items():
        if "command" in service:
            yield name, argv(service["command"]), service
        test = service.get("healthcheck", {}).get("test", [])
        if test and test[0] == "CMD" and "build" in service and test[1] != "python":  # python: route test below
            yield f"{name} healthcheck", test[1:], service


COMMANDS = list(commands_in(our_services()))


@pytest.mark.parametrize("service_name, command, service", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_parses_with_the_cli_it_calls(service_name, command, service):
    assert parse_command(command, service).command is not None


def test_dagster_commands_and_flags_exist_in_the_installed_dagster():
    """`--help` of each Dagster command the stack runs, from this environment's scripts."""
    bin_dir = Path(sys.executable).parent
    checked = set()
    for _, command, _ in COMMANDS:
        head = tuple(itertools.takewhile(lambda a: not a.startswith("-"), command))
        if not command[0].startswith("dagster") or head in checked:
            continue
        checked.add(head)
        result = subprocess.run([str(bin_dir / head[0]), *head[1:], "--help"], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        for flag in (a for a in command if a.startswith("--")):
            assert flag in result.stdout, f"`{' '.join(head)}` has no {flag}"
    assert len(checked) == 5  # code-server start, api grpc-health-check, webserver, daemon run, liveness-check


def test_webserver_healthcheck_asks_a_route_the_webserver_serves():
    import inspect

    import dagster_webserver.webserver

    test = " ".join(compose_services()["webserver"]["healthcheck"]["test"])
    route = test.split("http://127.0.0.1:3000")[1].split("'")[0]
    assert f'Route("{route}"' in inspect.getsource(dagster_webserver.webserver)


# --- workspaces -----------------------------------------------------------------------------------------


def code_server_options() -> dict:
    context = parse_command(argv(compose_services()["code-server"]["command"]), compose_services()["code-server"])
    return context.params


def test_local_workspace_loads_the_code_location():
    (entry,) = ensure_workspace_config(load_yaml(LOCAL_WORKSPACE), str(LOCAL_WORKSPACE))["load_from"]
    module = entry["python_module"]["module_name"]
    assert isinstance(importlib.import_module(module).defs(), dg.Definitions)
    assert code_server_options()["module_name"] == module
    assert entry["python_module"]["location_name"] == code_server_options()["location_name"]


def test_compose_workspace_reaches_the_code_server_by_service_name():
    path = file_in_container(argv(compose_services()["daemon"]["command"])[-1], compose_services()["daemon"])
    (entry,) = ensure_workspace_config(load_yaml(path), str(path))["load_from"]
    server = entry["grpc_server"]
    assert server["host"] in compose_services()
    assert (server["port"], server["location_name"]) == (code_server_options()["port"],
                                                         code_server_options()["location_name"])
    webserver = argv(compose_services()["webserver"]["command"])
    assert webserver[webserver.index("--workspace") + 1] == argv(compose_services()["daemon"]["command"])[-1]


# --- dagster.yaml ---------------------------------------------------------------------------------------


@pytest.fixture
def instance(server_url, tmp_path, monkeypatch):
    """The project's dagster.yaml, opened as Dagster opens it, on a fresh database of the test server."""
    name = f"dagster_test_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name)
    monkeypatch.setenv("CRYPTOBT_DAGSTER_STORAGE_URL", dagster_storage_url(server_url, database=name))
    (tmp_path / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as opened:
        yield opened
    drop_database(server_url, name)


def test_dagster_yaml_validates_and_opens_on_postgres(instance, tmp_path):
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own schema check, as the daemon does it
    assert config["telemetry"] == {"enabled": False}
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
    assert instance.run_monitoring_enabled
    queue = instance.get_concurrency_config().run_queue_config
    backtest_limit = next(limit["limit"] for limit in queue.tag_concurrency_limits
                          if (limit["key"], limit.get("value")) == (KIND_TAG, BACKTEST_RUN_TAGS[KIND_TAG]))
    assert 0 < backtest_limit < queue.max_concurrent_runs


MANY_PARTITIONS = [f"p{i:02d}" for i in range(40)]


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(MANY_PARTITIONS), backfill_policy=dg.BackfillPolicy.single_run())
def many_partitions(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})


def _materialize_range(instance, first: str, last: str) -> None:
    result = dg.materialize([many_partitions], instance=instance,
                            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})
    assert result.success


def test_a_run_over_many_partitions_writes_its_events_on_kept_connections(instance, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)  # what the code location sets for its runs
    opened = []
    sqlalchemy.event.listen(instance.event_log_storage._engine, "connect", lambda *_: opened.append(1))
    _materialize_range(instance, MANY_PARTITIONS[0], MANY_PARTITIONS[-1])
    # 40 planned events, 40 materializations and the run's own events: dagster-postgres's own storage opens 94.
    assert len(opened) <= 2
    key = many_partitions.key
    assert instance.get_materialized_partitions(key) == set(MANY_PARTITIONS)
    records = instance.fetch_materializations(key, limit=100).records
    assert sorted(r.partition_key for r in records) == MANY_PARTITIONS
    assert all(r.asset_materialization.metadata["partitions"].value == 40 for r in records)


def test_a_kept_connection_the_server_ended_is_replaced_not_failed(instance, server_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")  # a failed batch is retried event by event: no masking here
    _materialize_range(instance, "p00", "p01")
    database = instance.event_log_storage._engine.url.database
    with psycopg.connect(server_url, autocommit=True) as admin:  # what a server restart does to every client
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                              [database]).fetchone()[0]
    assert ended >= 1
    assert instance.get_materialized_partitions(many_partitions.key) == {"p00", "p01"}
    _materialize_range(instance, "p02", "p03")
    assert instance.get_materialized_partitions(many_partitions.key) == {"p00", "p01", "p02", "p03"}


def _queued(instance, job: str, tags: dict[str, str], count: int, status=DagsterRunStatus.QUEUED) -> None:
    location = GrpcServerCodeLocationOrigin(host="code-server", port=4000, location_name="cryptobt_pipelines")
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)
    for _ in range(count):
        create_run_for_test(instance, job_name=job, status=status, tags=tags, remote_job_origin=origin)


def runs_the_daemon_would_launch(instance) -> list[str]:
    # The run queue daemon's own selection step (limits, then priority): private, but pinned with Dagster.
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=5)
    return [run.job_name for run in daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)]


def test_queued_backtests_never_starve_ingest(instance):
    _queued(instance, "backtests", BACKTEST_RUN_TAGS, 6)
    _queued(instance, "ingest_files", INGEST_RUN_TAGS, 3)  # queued after every backtest
    launched = runs_the_daemon_would_launch(instance)
    max_runs = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    assert launched[:3] == ["ingest_files"] * 3, "ingest jumps the queue"
    assert len(launched) == max_runs and launched.count("backtests") == max_runs - 3


def test_backtests_in_progress_leave_slots_for_ingest(instance):
    _queued(instance, "backtests", BACKTEST_RUN_TAGS, 2, status=DagsterRunStatus.STARTED)
    _queued(instance, "backtests", BACKTEST_RUN_TAGS, 4)
    _queued(instance, "ingest_files", INGEST_RUN_TAGS, 1)
    assert runs_the_daemon_would_launch(instance) == ["ingest_files"]


def test_every_job_carries_a_run_kind_and_priority():
    for job in defs().get_repository_def().get_all_jobs():
        if job.name.startswith("__"):
            continue  # implicit asset jobs: their runs get tags from whoever requests them
        assert KIND_TAG in job.run_tags and PRIORITY_TAG in job.run_tags, f"job {job.name} has no run kind"
    assert int(INGEST_RUN_TAGS[PRIORITY_TAG]) > int(BACKTEST_RUN_TAGS[PRIORITY_TAG])


def test_every_run_executes_in_its_own_process_with_batched_events():
    # Asset backfills launched from the UI run the implicit asset job: it must execute in process too.
    for job in defs().get_repository_def().get_all_jobs():
        assert job.executor_def.name == "in_process", f"job {job.name} starts a process per step"
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == EVENT_BATCH_SIZE  # set by loading the code location


# --- the servers' own configuration files --------------------------------------------------------------


def _mounted_config(service: str, flag_prefix: str) -> Path:
    spec = compose_services()[service]
    for arg in argv(spec["command"]):
        if arg.startswith(flag_prefix):
            path = file_in_container(arg.removeprefix(flag_prefix), spec)
            assert path and path.is_file(), f"{service}: {arg} is not a file mounted from the repository"
            return path
    raise AssertionError(f"{service} is not started with its mounted configuration file")


def postgres_setting(conf: Path, name: str, tmp_path: Path) -> str:
    """The value PostgreSQL itself reads from `conf` (`postgres -C`: parses the file, starts nothing)."""
    result = subprocess.run([str(postgres_bin_dir() / "postgres"), "-C", name, "-D", str(tmp_path),
                             "-c", f"config_file={conf}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"PostgreSQL refuses {conf.name}: {result.stderr}"
    return result.stdout.strip()


def test_postgresql_conf_parses_with_jit_off_a_slow_query_log_and_timescaledb(tmp_path):
    conf = _mounted_config("timescaledb", "config_file=")
    assert postgres_setting(conf, "jit", tmp_path) == "off"
    assert int(postgres_setting(conf, "log_min_duration_statement", tmp_path)) > 0
    assert "timescaledb" in postgres_setting(conf, "shared_preload_libraries", tmp_path)
    assert postgres_setting(conf, "wal_level", tmp_path) == "replica"  # backups and read replicas
    hba = postgres_setting(conf, "hba_file", tmp_path)
    assert file_in_container(hba, compose_services()["timescaledb"]).is_file()


def test_postgres_check_refuses_a_broken_setting(tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text("jit = maybe\n")
    with pytest.raises(AssertionError, match="refuses"):
        postgres_setting(broken, "jit", tmp_path)


def test_redis_conf_starts_redis_with_a_memory_limit_and_an_eviction_policy(tmp_path):
    conf = next(file_in_container(a, compose_services()["redis"]) for a in argv(compose_services()["redis"]["command"])
                if a.endswith(".conf"))
    socket = tmp_path / "redis.sock"
    server = subprocess.Popen([str(redis_server_binary()), str(conf), "--port", "0", "--unixsocket", str(socket),
                               "--dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            assert server.poll() is None, f"redis-server refuses {conf.name}: {server.stdout.read()}"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        client = redis.Redis(unix_socket_path=str(socket))
        assert int(client.config_get("maxmemory")["maxmemory"]) > 0
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] in {"allkeys-lru", "volatile-ttl"}
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- more than one machine: Helm values and read replicas -----------------------------------------------

# Keys the Dagster chart's values schema allows where it forbids any other (its pydantic models, `extra="forbid"`,
# as of the 1.13 chart). Checked by hand against the chart's schema; transcribed here because tests must not
# fetch it.
CHART_KEYS = {
    (): {"dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
         "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
         "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
         "telemetry", "serviceAccount", "global", "retention", "additionalInstanceConfig", "concurrency"},
    ("global",): {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"},
    ("postgresql",): {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                      "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service", "pool"},
    ("dagsterDaemon",): {"enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps",
                         "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations",
                         "podSecurityContext", "securityContext", "resources", "checkDbReadyInitContainer",
                         "livenessProbe", "readinessProbe", "startupProbe", "annotations", "runMonitoring",
                         "runRetries", "sensors", "schedules", "backfills", "schedulerName", "logFormat",
                         "volumeMounts", "volumes", "initContainerResources", "extraContainers",
                         "extraPrependedInitContainers"},
    ("dagsterDaemon", "runCoordinator"): {"enabled", "type", "config"},
    ("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator"): {
        "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers",
        "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"},
    ("dagsterDaemon", "runRetries"): {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
    ("dagsterDaemon", "sensors"): {"useThreads", "numWorkers", "numSubmitWorkers"},
    ("dagsterDaemon", "schedules"): {"useThreads", "numWorkers", "numSubmitWorkers"},
    ("runLauncher",): {"type", "config"},
    ("runLauncher", "config", "k8sRunLauncher"): {
        "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile", "envConfigMaps",
        "envSecrets", "envVars", "volumeMounts", "volumes", "labels", "failPodOnRunFailure", "resources",
        "schedulerName", "securityContext", "runK8sConfig"},
    ("runLauncher", "config", "k8sRunLauncher", "runK8sConfig"): {
        "containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"},
    ("retention",): {"enabled", "sensor", "schedule", "autoMaterialize"},
    ("retention", "sensor", "purgeAfterDays"): {"skipped", "success", "failure", "started"},
    ("telemetry",): {"enabled"},
}
USER_DEPLOYMENT_KEYS = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "deploymentNamespace",
    "port", "replicaCount", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
    "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
    "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName", "initContainers", "sidecarContainers",
    "deploymentStrategy"}


def _at(values: dict, path: tuple) -> dict | None:
    for key in path:
        values = values.get(key) if isinstance(values, dict) else None
    return values


def test_helm_values_use_only_keys_the_dagster_chart_allows():
    values = load_yaml(HELM_VALUES)
    for path, allowed in CHART_KEYS.items():
        section = _at(values, path)
        if isinstance(section, dict):
            assert set(section) <= allowed, f"{'.'.join(path) or 'top level'}: {sorted(set(section) - allowed)}"
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert set(deployment) <= USER_DEPLOYMENT_KEYS, sorted(set(deployment) - USER_DEPLOYMENT_KEYS)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_helm_values_keep_the_instance_policy_of_dagster_yaml():
    values = load_yaml(HELM_VALUES)
    instance = load_yaml(DAGSTER_YAML)
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    local = instance["concurrency"]["runs"]
    assert {(t["key"], t.get("value")) for t in queue["tagConcurrencyLimits"]} == {
        (t["key"], t.get("value")) for t in local["tag_concurrency_limits"]}
    backtest = next(t["limit"] for t in queue["tagConcurrencyLimits"] if t.get("value") == BACKTEST_RUN_TAGS[KIND_TAG])
    assert backtest < queue["maxConcurrentRuns"]
    retries = values["dagsterDaemon"]["runRetries"]
    assert (retries["enabled"], retries["maxRetries"], retries["retryOnAssetOrOpFailure"]) == (
        instance["run_retries"]["enabled"], instance["run_retries"]["max_retries"],
        instance["run_retries"]["retry_on_asset_or_op_failure"])
    assert values["telemetry"]["enabled"] is False


def test_helm_code_deployment_runs_the_compose_code_server():
    (deployment,) = load_yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    # The chart prepends `dagster code-server start -h 0.0.0.0 -p <port>`.
    command = ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", str(deployment["port"]),
               *deployment["codeServerArgs"]]
    params = parse_command(command, {}).params
    assert (params["module_name"], params["location_name"]) == (
        code_server_options()["module_name"], code_server_options()["location_name"])
    unread = set(deployment["env"]) - variables_the_code_reads()
    assert not unread, f"the Helm code deployment sets {sorted(unread)}, which nothing reads"


def test_downstream_connection_examples_are_valid_libpq_urls():
    lines = [line.lstrip("# ").strip() for line in DOWNSTREAM_ENV.read_text().splitlines()]
    urls = [line.split("=", 1)[1] for line in lines if line.startswith("DOWNSTREAM_DATABASE_URL=")]
    assert len(urls) >= 2
    for url in urls:
        options = {o.keyword.decode(): o.val for o in pq.Conninfo.parse(url.encode()) if o.val is not None}
        assert options["dbname"] == b"cryptobt"
        assert options.get("user") != b"postgres", "downstream readers never use the superuser"


def test_replica_overlay_clones_with_the_role_pg_hba_lets_replicate():
    replica = compose_services(REPLICA_COMPOSE)["timescaledb-replica"]
    script = file_in_container(argv(replica["entrypoint"])[-1], replica).read_text()
    hba = (PROJECT_ROOT / "deploy" / "compose" / "pg_hba.conf").read_text().splitlines()
    replication_users = {line.split()[2] for line in hba if line.split()[:2] == ["host", "replication"]}
    user = script.split("--username=")[1].split()[0]
    assert user in replication_users
    assert replica["image"] == compose_services()["timescaledb"]["image"], "a replica runs the primary's version"
    subprocess.run(["sh", "-n", str(file_in_container(argv(replica["entrypoint"])[-1], replica))], check=True)


def test_libpq_check_refuses_an_unknown_connection_option():
    with pytest.raises(psycopg.OperationalError):
        pq.Conninfo.parse(b"postgresql://reader@host/cryptobt?target_session_atrs=read-only")
