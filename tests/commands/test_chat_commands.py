"""The commands of the command core, as a script on a pipe sees them (the page runs the same ones)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from memchat.commands import REGISTRY, help_rows
from memchat.stores.protocol import Summary
from support import ROOT, Memchat, clean_env, opened, stored_items


def test_retry_asks_again_and_the_new_reply_replaces_the_old(memchat: Memchat) -> None:
    run = memchat(input="[[nth]] pick a number\n/retry\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "answer 1\nanswer 2\n"
    assert memchat.stored("user1") == [("you", "[[nth]] pick a number"), ("assistant", "answer 2")]


def test_a_retry_that_fails_keeps_the_old_exchange(memchat: Memchat) -> None:
    memchat(input="keep me\n")
    run = memchat(input="/retry\n", OPENAI_BASE_URL="http://127.0.0.1:9/v1", MEMCHAT_RETRIES="0")
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert memchat.stored("user1") == [("you", "keep me"), ("assistant", "You said: keep me")]


def test_retry_and_edit_with_nothing_to_redo_say_so(memchat: Memchat) -> None:
    run = memchat(input="/retry\n")
    assert run.returncode == 0
    assert "nothing to retry" in run.stderr


def test_edit_and_copy_need_an_interactive_terminal(memchat: Memchat) -> None:
    memchat(input="hello\n")
    run = memchat(input="/edit\n/copy\n")
    assert run.returncode == 1
    assert run.stderr.count("needs an interactive terminal") == 2
    assert "\x1b]52" not in run.stdout


def test_model_shows_the_model_and_switches_it_for_this_session(memchat: Memchat, server: FakeOpenAI) -> None:
    run = memchat("--model", "first-model", input="/model\n/model second-model\nhello\n")
    assert run.returncode == 0, run.stderr
    assert "model: first-model at http://127.0.0.1" in run.stderr
    assert "now using second-model" in run.stderr
    assert server.requests[-1].body["model"] == "second-model"
    # For this session only: the next start uses the configured model again.
    memchat("--model", "first-model", input="again\n")
    assert server.requests[-1].body["model"] == "first-model"


def test_usage_reports_the_servers_token_counts_and_the_budget_used(memchat: Memchat) -> None:
    before = memchat(input="/usage\n")
    assert "no request yet" in before.stderr
    run = memchat(input="hello\nhello again\n/usage\n")
    assert run.returncode == 0, run.stderr
    last = re.search(r"last request\s+([\d,]+) tokens in, ([\d,]+) out", run.stdout)
    session = re.search(r"this session\s+([\d,]+) tokens in, ([\d,]+) out, in 2 turns", run.stdout)
    assert last and session, run.stdout
    assert int(session.group(1).replace(",", "")) > int(last.group(1).replace(",", "")) > 0
    assert re.search(r"context budget\s+history of about \d+ of 8,000 tokens \(\d+%\)", run.stdout)


def test_instructions_are_kept_with_the_memory_and_sent_with_every_request(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    memchat("--user", "ann", input="/instructions Always answer like a pirate.\n")
    shown = memchat("--user", "ann", input="/instructions\nhello\n")
    assert "Always answer like a pirate." in shown.stderr
    assert "Always answer like a pirate." in json.dumps(server.requests[-1].body)
    memchat("--user", "bob", input="hello\n")
    assert "pirate" not in json.dumps(server.requests[-1].body)
    memchat("--user", "ann", input="/instructions off\nhello\n")
    assert "pirate" not in json.dumps(server.requests[-1].body)


def test_clear_removes_the_instructions_too(memchat: Memchat, server: FakeOpenAI) -> None:
    memchat(input="/instructions Speak French.\nhello\n")
    run = memchat(input="/clear\n/instructions\n")
    assert "no standing instructions" in run.stderr
    memchat(input="hello\n")
    assert "Speak French" not in json.dumps(server.requests[-1].body)


def test_instructions_too_long_are_refused_with_the_limit(memchat: Memchat) -> None:
    run = memchat(input="/instructions " + "x" * 5000 + "\n/instructions\n")
    assert "keep them under 4,000" in run.stderr
    assert "no standing instructions" in run.stderr


def test_export_writes_markdown_json_or_stdout(memchat: Memchat) -> None:
    memchat(input="/instructions Be brief.\nmy name is Sara\n")
    run = memchat(input="/export talk.md\n/export talk.json\n/export\n")
    assert run.returncode == 0, run.stderr
    markdown = (memchat.cwd / "talk.md").read_text()
    assert "## Standing instructions\n\nBe brief." in markdown
    assert "my name is Sara" in markdown and "You said: my name is Sara" in markdown
    data = json.loads((memchat.cwd / "talk.json").read_text())
    assert data["format"] == "memchat-export" and data["instructions"] == "Be brief."
    assert [item["role"] for item in data["items"]] == ["user", "assistant"]
    assert run.stdout.startswith("# memchat: the memory of user1")
    assert "exported 2 messages of user1 to talk.md" in run.stderr


def test_an_export_to_a_folder_that_does_not_exist_is_one_line(memchat: Memchat) -> None:
    run = memchat(input="hello\n/export nowhere/talk.md\n")
    assert run.returncode == 1
    assert re.search(r"^error: cannot write nowhere/talk\.md \(.+\): pass /export another path$", run.stderr, re.M)


def test_export_then_import_gives_back_the_same_memory_on_every_store(location: str, tmp_path: Path) -> None:
    async def fill() -> None:
        async with opened(location) as store:
            memory = store.memory("sara")
            for number in range(6):
                await memory.add_items(
                    [
                        {"role": "user", "content": f"fact {number} ünïcode ✓"},
                        {"type": "function_call", "call_id": f"c{number}", "name": "look", "arguments": "{}"},
                        {"type": "function_call_output", "call_id": f"c{number}", "output": "ok"},
                        {"role": "assistant", "content": [{"type": "output_text", "text": f"noted {number}"}]},
                    ]
                )
            turns = [turn async for turn in memory.turns_forward(0, 2**62)]
            await memory.save_summary(Summary("She told six facts.", turns[2].end))
            await memory.set_instructions("Answer in verse.")

    asyncio.run(fill())
    env_db = {"MEMCHAT_DB": location}
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    runner = Memchat(work, clean_env(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1", **env_db))
    exported = runner("export", "--user", "sara", "--to", "sara.json")
    assert exported.returncode == 0, exported.stderr
    target = str(tmp_path / "restored.db")
    imported = runner("import", "sara.json", "--db", target)
    assert imported.returncode == 0, imported.stderr
    assert "sara: imported 24 messages" in imported.stderr
    again = runner("export", "--user", "sara", "--db", target)
    first = json.loads((work / "sara.json").read_text())
    second = json.loads(again.stdout)
    for data in (first, second):
        data.pop("exported_at")
    assert first == second
    assert first["summary"] == {"text": "She told six facts.", "items": 12}
    assert stored_items(target, "sara") == stored_items(location, "sara")
    # Importing again adds nothing; into a different conversation, nothing is changed.
    assert "already up to date" in runner("import", "sara.json", "--db", target).stderr

    async def tom_chats() -> None:
        async with opened(target) as store:
            await store.memory("tom").add_items([{"role": "user", "content": "hello"}])

    asyncio.run(tom_chats())
    refused = runner("import", "sara.json", "--db", target, "--user", "tom")
    assert refused.returncode == 1
    assert "already holds a different conversation" in refused.stderr


def test_import_of_a_file_that_is_not_an_export_is_one_line(memchat: Memchat) -> None:
    (memchat.cwd / "notes.json").write_text('{"hello": 1}')
    run = memchat("import", "notes.json")
    assert run.returncode == 2
    assert (
        run.stderr
        == "error: notes.json cannot be imported: it is not a memchat export; pass a file written by memchat export\n"
    )
    missing = memchat("import", "absent.json")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot read absent.json (")


def test_every_command_is_in_the_help_and_the_docs() -> None:
    page = (ROOT / "docs" / "commands.md").read_text()
    for spec in REGISTRY.values():
        assert spec.usage in help_rows()
        assert f"`{spec.usage}`" in page, f"{spec.usage} is not documented in docs/commands.md"
    web = help_rows(web=True)
    assert "/user ID" not in web and "/copy [N]" not in web and "/retry" in web


@pytest.mark.parametrize("line", ["/help", "/HELP"])
def test_help_lists_every_command(memchat: Memchat, line: str) -> None:
    run = memchat(input=line + "\n")
    for usage in help_rows():
        assert usage in run.stdout


def test_usage_estimates_the_cost_of_the_last_turn_and_the_session_for_a_priced_model(memchat: Memchat) -> None:
    run = memchat(input="hello\nhello again\n/usage\n", MEMCHAT_PRICES="gpt-5.4-mini=1000/2000")
    assert run.returncode == 0, run.stderr
    counts = re.search(r"last request\s+([\d,]+) tokens in, ([\d,]+) out", run.stdout)
    session = re.search(r"this session\s+([\d,]+) tokens in, ([\d,]+) out", run.stdout)
    assert counts and session, run.stdout
    tokens_in, tokens_out = (int(group.replace(",", "")) for group in counts.groups())
    expected = (tokens_in * 1000 + tokens_out * 2000) / 1_000_000
    shown = {key: value for key, _, value in (line.partition("  ") for line in run.stdout.splitlines())}
    assert shown["last turn cost"].strip() == f"${expected:.4f} (estimated at $1000 / $2000 a million tokens in / out)"
    all_in, all_out = (int(group.replace(",", "")) for group in session.groups())
    assert shown["this session cost"].strip() == f"${(all_in * 1000 + all_out * 2000) / 1_000_000:.4f}"


def test_usage_says_no_cost_for_a_model_without_a_known_price(memchat: Memchat) -> None:
    run = memchat(input="hello\n/usage\n")
    assert "last request" in run.stdout and "cost" not in run.stdout


def test_a_malformed_price_is_one_line(memchat: Memchat) -> None:
    run = memchat(input="hello\n", MEMCHAT_PRICES="gpt-5.4-mini=cheap")
    assert run.returncode == 2
    assert run.stderr == (
        "error: MEMCHAT_PRICES has 'gpt-5.4-mini=cheap': write MODEL=IN/OUT in dollars per million tokens, "
        "as in my-model=0.15/0.60\n"
    )


def test_the_last_turns_cost_is_at_the_price_of_the_model_that_answered_it(memchat: Memchat) -> None:
    run = memchat(input="hello\n/model cheaper\n/usage\n", MEMCHAT_PRICES="gpt-5.4-mini=1000/2000,cheaper=1/1")
    assert "(estimated at $1000 / $2000 a million tokens in / out)" in run.stdout, run.stdout
