"""``--db`` takes a path or a URL; every store that cannot be used is one clear line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import POSTGRES_URL, REDIS_URL, Memchat, Run, require_server

SECRET = "s3cret-pw"


def assert_refused(run: Run, *phrases: str) -> None:
    """Exit 2 with one ``error:`` line containing ``phrases``, and the password nowhere."""
    assert run.returncode == 2, run
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for phrase in phrases:
        assert phrase in lines[0]
    assert SECRET not in run.stderr


def test_sqlite_url_and_plain_path_name_the_same_file(memchat: Memchat) -> None:
    told = memchat("--db", "sqlite:///mine.db", input="my name is Ann\n")
    assert told.returncode == 0, told.stderr
    asked = memchat("--db", "mine.db", input="what's my name?\n")
    assert asked.stdout.strip() == "Your name is Ann."


def test_a_sqlite_url_with_two_slashes_is_refused(memchat: Memchat) -> None:
    assert_refused(memchat("--db", "sqlite://mine.db", input="hi\n"), "sqlite:///PATH")


def test_an_unknown_kind_of_database_is_refused_without_its_password(memchat: Memchat) -> None:
    assert_refused(memchat("--db", f"mysql://me:{SECRET}@db/chat", input="hi\n"), "unknown kind of database 'mysql'")


def test_memchat_db_in_dotenv_picks_the_store(memchat: Memchat) -> None:
    require_server(REDIS_URL)
    (memchat.cwd / ".env").write_text(f"MEMCHAT_DB=redis://:{SECRET}@127.0.0.1:1/0\n")
    assert_refused(memchat(input="hi\n"), "cannot reach Redis", "redis://:***@127.0.0.1:1/0")


@pytest.mark.parametrize(
    ("url", "phrases"),
    [
        (f"postgresql://postgres:{SECRET}@127.0.0.1:1/test", ["cannot reach PostgreSQL", "start the server"]),
        (f"redis://:{SECRET}@127.0.0.1:1/0", ["cannot reach Redis", "start the server"]),
    ],
)
def test_a_server_that_is_down_is_one_line(memchat: Memchat, url: str, phrases: list[str]) -> None:
    assert_refused(memchat("--db", url, input="hi\n"), *phrases)


def test_postgres_wrong_user_or_database_is_one_line_without_the_password(memchat: Memchat) -> None:
    require_server(POSTGRES_URL)
    assert_refused(
        memchat("--db", f"postgresql://nobody:{SECRET}@127.0.0.1:5432/test", input="hi\n"),
        "refused",
        'role "nobody" does not exist',
    )
    assert_refused(
        memchat("--db", f"postgresql://postgres:{SECRET}@127.0.0.1:5432/no_such_db", input="hi\n"),
        'database "no_such_db" does not exist',
    )


def test_redis_wrong_credentials_are_one_line_without_the_password(memchat: Memchat) -> None:
    require_server(REDIS_URL)
    assert_refused(
        memchat("--db", f"redis://nobody:{SECRET}@127.0.0.1:6379/15", input="hi\n"), "Redis refused the login"
    )


def test_redis_refuses_ids_whose_keys_would_overlap_another_users(memchat: Memchat) -> None:
    require_server(REDIS_URL)
    assert_refused(memchat("--db", REDIS_URL, "--user", "alice:messages", input="hi\n"), "pick another id")


@pytest.mark.parametrize(
    ("url", "extra", "module"),
    [(POSTGRES_URL, "postgres", "asyncpg"), (REDIS_URL, "redis", "redis")],
    ids=["postgres", "redis"],
)
def test_a_url_whose_extra_is_not_installed_names_the_extra(
    memchat: Memchat, tmp_path: Path, url: str, extra: str, module: str
) -> None:
    # Nothing can be uninstalled from the test environment, so the driver is hidden from this one process.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {module!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    run = memchat("--db", url, input="hi\n", PYTHONPATH=str(hide))
    assert_refused(run, f"needs the {extra} extra", f"pip install -e '.[{extra}]'")
