"""A throw-away PostgreSQL server for tests and benchmarks: the tracking store the cluster configs use.

MLflow on a cluster keeps its runs in PostgreSQL (``cluster/README.md`` says why, with figures); the tests and
benches that check that path need a real server without asking the machine for one. :func:`throwaway_postgres`
runs ``initdb`` in a private temp dir, starts ``postgres`` on loopback (a free port, its unix socket in the same
dir, so nothing touches the machine's own ``/var/run/postgresql``), creates the database ``mlflow`` and yields a
SQLAlchemy URL; on exit it stops the server (``pg_ctl stop -m fast``, then the postmaster's pid) and deletes
everything.

``initdb`` refuses to run as root. As root the server runs as the ``postgres`` user (or ``nobody``) through
``runuser`` (or ``su``); where neither exists, :class:`PostgresUnavailable` says so, and so it does when no
binaries are found (:func:`postgres_binaries`: ``$NONE_SWEEP_PG_BIN``, ``PATH``, ``/usr/local/bin``, then Debian's
``/usr/lib/postgresql/<version>/bin``, newest first). Callers skip on it with its message.

    with throwaway_postgres(tmp_path) as url:    # postgresql+psycopg2://mlflow@127.0.0.1:PORT/mlflow
        subprocess.run(["mlflow", "server", "--backend-store-uri", url, ...])
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["PostgresUnavailable", "postgres_binaries", "postgres_unavailable", "throwaway_postgres"]

TOOLS = ("initdb", "pg_ctl", "postgres")
DATABASE = "mlflow"
USER = "mlflow"  # the cluster's superuser role (initdb -U), trusted on loopback only
START_TIMEOUT_S = 90


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL can be started here; the message says why (for ``pytest.skip``)."""


def _has_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in TOOLS)


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)


def postgres_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None`` when this machine has none.

    Debian installs them outside ``PATH`` (``/usr/lib/postgresql/15/bin``); some images link them into
    ``/usr/local/bin``. ``$NONE_SWEEP_PG_BIN`` names another folder.
    """
    candidates: list[Path] = []
    if os.environ.get("NONE_SWEEP_PG_BIN"):
        candidates.append(Path(os.environ["NONE_SWEEP_PG_BIN"]))
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    candidates.append(Path("/usr/local/bin"))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    return next((c for c in candidates if _has_tools(c)), None)


def _server_user() -> str | None:
    """The account the server runs as when we are root (``initdb`` refuses root); ``None``: we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists for initdb")


def _as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run as ``user`` (``runuser``, else ``su``); unchanged when we are not root."""
    if user is None:
        return list(argv)
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    if shutil.which("su"):
        import shlex

        return ["su", "-s", "/bin/sh", user, "-c", shlex.join(argv)]
    raise PostgresUnavailable("running as root (initdb refuses root) and neither runuser nor su is available")


def postgres_unavailable() -> str | None:
    """Why :func:`throwaway_postgres` cannot work here, or ``None`` when it can (no server is started)."""
    if postgres_binaries() is None:
        return "no PostgreSQL binaries (initdb, pg_ctl, postgres) in $NONE_SWEEP_PG_BIN, PATH, /usr/local/bin or /usr/lib/postgresql/*/bin; apt-get install postgresql"
    try:
        _as_user(_server_user(), ["true"])
        import psycopg2  # noqa: F401 -- the URL's driver, and how the database is created
    except PostgresUnavailable as exc:
        return str(exc)
    except ImportError:
        return "psycopg2 is not installed: pip install -e '.[postgres]'"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], cwd: Path, what: str, timeout: float = 120) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(bin_dir: Path, user: str | None, data: Path, tmp: Path, pid: int | None) -> None:
    """``pg_ctl stop -m fast``; then SIGKILL the postmaster (and so its children) if it is still there."""
    try:
        subprocess.run(_as_user(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30",
                                       "stop"]), cwd=tmp, capture_output=True, timeout=60)  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        pass
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.2)


def _wait_ready(port: int, log: Path) -> None:
    import psycopg2

    end = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres", connect_timeout=3).close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() > end:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not accept connections on port {port}: {exc}\n{tail}") from exc
            time.sleep(0.3)


@contextlib.contextmanager
def throwaway_postgres(root: Path, *, fsync: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL on 127.0.0.1 for the ``with`` block; yields ``postgresql+psycopg2://...:PORT/mlflow``.

    ``root``: where the server's log is kept after it stops (``root/postgres.log``), for a failed test to show.
    The cluster itself lives in a short private dir under the system temp dir: the unix socket path must fit
    107 bytes and, as root, the ``postgres`` user must reach it (pytest's ``/tmp/pytest-of-root`` is 0700).
    ``fsync=False`` trades durability for speed; the default keeps PostgreSQL's own (what a cluster runs).
    Raises :class:`PostgresUnavailable` when no server can be started here (see :func:`postgres_unavailable`).
    """
    reason = postgres_unavailable()
    if reason:
        raise PostgresUnavailable(reason)
    import psycopg2

    bin_dir = postgres_binaries()
    assert bin_dir is not None
    user = _server_user()
    tmp = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp" if Path("/tmp").is_dir() else None))
    data, sock, log = tmp / "data", tmp / "sock", tmp / "postgres.log"
    sock.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (tmp, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    pid: int | None = None
    try:
        _run(_as_user(user, [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                             "--no-sync", "--no-instructions"]), tmp, "initdb")  # fmt: skip
        for attempt in range(3):  # the free port can be taken between finding it and binding it
            port = _free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c max_connections=200"
            if not fsync:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            start = subprocess.run(
                _as_user(user, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t",
                                str(START_TIMEOUT_S), "start"]),
                cwd=tmp, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            pid = _postmaster_pid(data)
            if start.returncode == 0:
                break
            log_text = log.read_text(errors="replace") if log.exists() else ""
            if attempt == 2 or "could not bind" not in log_text:
                raise RuntimeError(f"pg_ctl start failed: {(start.stdout + start.stderr)[-1500:]}\n{log_text[-2000:]}")
        _wait_ready(port, log)
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            conn.close()
        yield f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        _stop(bin_dir, user, data, tmp, pid or _postmaster_pid(data))
        with contextlib.suppress(OSError):
            root.mkdir(parents=True, exist_ok=True)
            if log.exists():
                shutil.copyfile(log, root / "postgres.log")
        shutil.rmtree(tmp, ignore_errors=True)
