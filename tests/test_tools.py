"""MCP servers' tools inside the remembered conversation (docs/tools.md): configured in one file, started on first
need, approved by the person, bounded in the request, and failing as one notice, never a lost turn."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_openai import FakeOpenAI, request_tokens
from support import Memchat, assert_exits_with_0, free_port, listening, prompt

SERVER = Path(__file__).parent / "mcp_server.py"


def call(tool: str, **arguments: Any) -> str:
    """A message the test server answers by calling ``tool`` with ``arguments``."""
    return f"[[tool:{tool}:{json.dumps(arguments)}]]"


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    """The file the test MCP server writes a line to for each call it runs."""
    return tmp_path / "calls"


def stdio(calls: Path, trusted: bool | list[str] = False) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER)], "env": {"MCP_TEST_CALLS": str(calls)}, "trusted": trusted}


def configure(memchat: Memchat, text: str) -> Path:
    """Write the MCP config where memchat looks by default (the user's config folder)."""
    path = Path(memchat.env["XDG_CONFIG_HOME"]) / "memchat" / "mcp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def servers(memchat: Memchat, **entries: dict[str, Any]) -> Path:
    return configure(memchat, json.dumps({"mcpServers": entries}, indent=1))


def ran(calls: Path) -> int:
    return len(calls.read_text().split()) if calls.exists() else 0


def test_a_trusted_tool_runs_and_its_call_is_remembered_with_the_turn(memchat: Memchat, calls: Path) -> None:
    servers(memchat, numbers=stdio(calls, trusted=["add"]))
    run = memchat("--user", "ann", input=f"what is 2 and 3 {call('add', a=2, b=3)}\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Tool said: 5"
    assert ran(calls) == 1
    # Stored inside the atomic turn, the call paired with its output, and shown by /history.
    assert memchat.stored("ann")[1:3] == [("tool", 'called add({"a": 2, "b": 3})'), ("tool", "returned 5")]
    shown = memchat("--user", "ann", input="/history\n").stdout
    assert 'tool: called add({"a": 2, "b": 3})' in shown and "tool: returned 5" in shown


@pytest.fixture
def http_server(calls: Path) -> Iterator[str]:
    port = free_port()
    env = {"MCP_TEST_CALLS": str(calls), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)], env=env, stderr=subprocess.DEVNULL)
    if not listening(port, process, 20):
        pytest.fail("the test MCP server did not start listening over HTTP within 20 s")
    yield f"http://127.0.0.1:{port}/mcp"
    process.kill()
    process.wait()


def test_a_streamable_http_server_works_the_same(memchat: Memchat, calls: Path, http_server: str) -> None:
    servers(memchat, web={"url": http_server, "trusted": True})
    run = memchat(input=f"shout it {call('shout', text='quiet please')}\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Tool said: QUIET PLEASE"
    assert ran(calls) == 1


def test_on_a_pipe_a_tool_not_trusted_does_not_run_and_says_so(memchat: Memchat, calls: Path) -> None:
    servers(memchat, numbers=stdio(calls, trusted=["add"]))
    run = memchat(input=f"shout {call('shout', text='hi')}\n")
    assert run.returncode == 0, run.stderr
    assert ran(calls) == 0
    assert "has not allowed shout to run" in run.stdout
    assert "the model asked to run shout of MCP server numbers, which is not trusted: not run" in run.stderr


def test_in_a_terminal_the_person_approves_each_call_and_always_is_kept_per_user(
    spawn: Any, memchat: Memchat, calls: Path
) -> None:
    servers(memchat, numbers=stdio(calls))
    child = spawn("--user", "ann")
    prompt(child, "ann")
    child.sendline(f"shout {call('shout', text='hi')}")
    child.expect_exact("the model wants to run shout of MCP server numbers with")
    child.expect_exact("run shout? [y/N/always]")
    child.sendline("y")
    child.expect_exact("Tool said: HI")
    prompt(child, "ann")
    child.sendline(f"again {call('shout', text='no')}")
    child.expect_exact("run shout? [y/N/always]")
    child.sendline("")  # Enter alone is no
    child.expect_exact("declined to run shout")
    prompt(child, "ann")
    child.sendline(f"for good {call('shout', text='yes')}")
    child.expect_exact("run shout? [y/N/always]")
    child.sendline("always")
    child.expect_exact("Tool said: YES")
    prompt(child, "ann")
    child.sendline(f"no question now {call('shout', text='free')}")
    child.expect_exact("Tool said: FREE")
    prompt(child, "ann")
    assert "run shout?" not in str(child.before)
    child.sendline("/tools")
    child.expect_exact("always allowed")
    prompt(child, "ann")
    child.sendeof()
    assert_exits_with_0(child)
    assert ran(calls) == 3
    # Kept across runs for this user, in a terminal; another user is asked.
    again = spawn("--user", "ann")
    prompt(again, "ann")
    again.sendline(f"next day {call('shout', text='kept')}")
    again.expect_exact("Tool said: KEPT")
    prompt(again, "ann")
    assert "run shout?" not in str(again.before)
    again.sendline("/tools revoke")
    again.expect_exact("1 tool of ann will ask again before running")
    again.sendline(f"and now {call('shout', text='asked')}")
    again.expect_exact("run shout? [y/N/always]")
    again.sendline("n")
    prompt(again, "ann")
    again.sendeof()
    assert_exits_with_0(again)
    other = spawn("--user", "bob")
    prompt(other, "bob")
    other.sendline(f"mine {call('shout', text='bob')}")
    other.expect_exact("run shout? [y/N/always]")
    other.sendline("n")
    prompt(other, "bob")
    assert ran(calls) == 4


def test_a_server_that_crashes_mid_call_is_one_notice_and_the_turn_is_kept(
    memchat: Memchat, calls: Path, server: FakeOpenAI
) -> None:
    servers(memchat, numbers=stdio(calls, trusted=True))
    run = memchat("--user", "ann", input=f"go {call('crash')}\nthen {call('add', a=1, b=1)}\nstill here?\n")
    assert run.returncode == 0, run.stderr
    replies = run.stdout.strip().splitlines()
    assert replies[0].startswith("Tool said: The tool crash failed")
    # Its tools are no longer offered: the model answers without them.
    offered = [tool["function"]["name"] for tool in server.requests[-1].body["tools"]]
    assert "add" not in offered and "search_memory" in offered
    assert replies[1:] == ['You said: then [[tool:add:{"a": 1, "b": 1}]]', "You said: still here?"]
    assert run.stderr.count("MCP server numbers stopped during a call of crash") == 1
    assert "Traceback" not in run.stderr
    assert [speaker for speaker, _ in memchat.stored("ann")].count("assistant") == 3


def test_a_server_that_does_not_start_is_one_notice_and_the_chat_goes_on(memchat: Memchat) -> None:
    servers(memchat, missing={"command": str(memchat.cwd / "no-such-server")})
    run = memchat(input="hello\nhello again\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["You said: hello", "You said: hello again"]
    assert run.stderr.count("MCP server missing did not start") == 1


def test_a_one_megabyte_result_is_cut_to_the_room_the_budget_left(
    memchat: Memchat, calls: Path, server: FakeOpenAI
) -> None:
    servers(memchat, numbers=stdio(calls, trusted=True))
    run = memchat("--user", "ann", "--context-tokens", "2000", input=f"all of it {call('big')}\n")
    assert run.returncode == 0, run.stderr
    output = memchat.stored("ann")[2][1]
    assert "[cut by memchat: the tool returned 1,000,000 characters" in output
    assert len(output) < 8_000
    answering = server.requests[-1].body
    assert answering["messages"][-1]["role"] == "tool"
    assert request_tokens(answering) < 2_000 * 1.25


def test_a_config_with_a_syntax_error_is_one_error_line_naming_the_file_and_line(memchat: Memchat) -> None:
    path = configure(memchat, '{"mcpServers": {\n  "a": {"command": "x"}\n  "b": {}\n}}\n')
    run = memchat(input="hello\n")
    assert run.returncode == 2
    assert (
        run.stderr
        == f"error: {path} line 3 column 3: Expecting ',' delimiter: fix the JSON, or move the file away to chat without MCP servers\n"
    )
    assert run.stdout == ""


def test_a_server_entry_without_command_or_url_is_one_error_line(memchat: Memchat) -> None:
    path = configure(memchat, json.dumps({"mcpServers": {"a": {"args": []}}}))
    run = memchat("web", "--port", "1")
    assert run.returncode == 2
    assert run.stderr.startswith(f'error: {path}: server "a" needs either "command"')
    assert len(run.stderr.splitlines()) == 1


def test_no_tools_offers_the_model_none(memchat: Memchat, calls: Path, server: FakeOpenAI) -> None:
    servers(memchat, numbers=stdio(calls, trusted=True))
    for way in (("--no-tools",), ()):
        server.requests.clear()
        env = {} if way else {"MEMCHAT_TOOLS": "off"}
        run = memchat(*way, input=f"sum {call('add', a=1, b=2)}\n/tools\n", **env)
        assert run.returncode == 0, run.stderr
        assert "tools" not in server.requests[0].body
        assert "tools are off" in run.stderr
    assert ran(calls) == 0


def test_tools_lists_each_server_its_tools_and_what_each_may_do(memchat: Memchat, calls: Path) -> None:
    servers(
        memchat,
        numbers=stdio(calls, trusted=["add"]),
        gone={"command": str(memchat.cwd / "no-such-server")},
    )
    shown = memchat(input="/tools\n").stdout
    assert f"numbers  5 tools · {sys.executable} {SERVER}" in shown
    assert "  add    trusted" in shown
    assert "  shout  asks first" in shown
    assert "gone     not available: did not start" in shown


def test_without_servers_nothing_of_mcp_is_loaded(memchat: Memchat) -> None:
    script = (
        "import sys; sys.argv = ['memchat', '--user', 'ann']; from memchat.cli import main; code = main();"
        "loaded = [m for m in ('memchat.toolbox.servers', 'agents.mcp.server', 'mcp.client.stdio') if m in sys.modules];"
        "print('loaded:', loaded, code)"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        input=b"hello\n",
        capture_output=True,
        cwd=memchat.cwd,
        env={**memchat.env, "PYTHONPATH": str(Path(__file__).parent.parent)},
        timeout=60,
    )
    assert run.stdout.decode().splitlines() == ["You said: hello", "loaded: [] 0"], run.stderr.decode()


def test_on_a_pipe_a_tool_allowed_for_good_in_a_terminal_still_does_not_run(memchat: Memchat, calls: Path) -> None:
    # What feeds a pipe may not be the person (a file, another program): only trusted tools run there.
    servers(memchat, numbers=stdio(calls, trusted=["add"]))
    allowed = Path(memchat.env["XDG_STATE_HOME"]) / "memchat" / "allowed_tools.json"
    allowed.parent.mkdir(parents=True, exist_ok=True)
    allowed.write_text(json.dumps({"ann": ["numbers/shout"]}))
    run = memchat("--user", "ann", input=f"{call('add', a=4, b=4)}\n{call('shout', text='x')}\n/tools\n")
    assert run.stdout.splitlines()[:2] == [
        "Tool said: 8",
        "Tool said: The person has not allowed shout to run here. Do not call it again in this turn.",
    ]
    assert "  shout  always allowed in a terminal (not run on a pipe or the page)" in run.stdout
    assert ran(calls) == 1


def test_a_later_request_carries_a_long_result_shortened_and_the_store_keeps_it(
    memchat: Memchat, calls: Path, server: FakeOpenAI
) -> None:
    servers(memchat, numbers=stdio(calls, trusted=True))
    run = memchat("--user", "ann", input=f"all of it {call('big')}\nnext question\n")
    assert run.returncode == 0, run.stderr
    whole = memchat.stored("ann")[2][1]
    assert len(whole) > 10_000
    later = next(
        request.body["messages"]
        for request in server.requests
        if request.body.get("messages") and request.body["messages"][-1].get("content") == "next question"
    )
    (output,) = [message["content"] for message in later if message.get("role") == "tool"]
    assert output.endswith(
        f"[shortened by memchat in later requests: {len(whole) - len('returned '):,} characters in all, kept in the memory]"
    )
    assert len(output) < 1_700


def test_a_config_file_named_but_missing_or_a_wrong_trusted_is_one_error_line(memchat: Memchat) -> None:
    missing = memchat.cwd / "nowhere.json"
    run = memchat(input="hello\n", MEMCHAT_MCP_CONFIG=str(missing))
    assert (run.returncode, run.stderr) == (
        2,
        f"error: {missing} does not exist: write the MCP servers there, or unset MEMCHAT_MCP_CONFIG\n",
    )
    path = configure(memchat, json.dumps({"mcpServers": {"a": {"command": "x", "trusted": "yes"}}}))
    run = memchat(input="hello\n")
    assert (run.returncode, run.stderr) == (
        2,
        f'error: {path}: server "a" has "trusted" that is neither true, false nor a list of tool names\n',
    )


def test_a_server_gets_its_own_env_and_never_memchats_api_key(memchat: Memchat, calls: Path) -> None:
    entry = stdio(calls, trusted=True)
    entry["env"]["GREETING"] = "hej"
    servers(memchat, numbers=entry)
    key = "sk-memchat-secret-key-1234567890"
    run = memchat(input=f"{call('env', name='GREETING')}\n{call('env', name='OPENAI_API_KEY')}\n", OPENAI_API_KEY=key)
    assert run.stdout.splitlines() == ["Tool said: hej", "Tool said: (unset)"]
    assert key not in run.stdout + run.stderr
