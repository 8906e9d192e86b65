"""Files attached to a message with /attach (docs/tools.md#attachments): text and images reach the model, the store
keeps what was attached, bounded, and encrypted like any message."""

from __future__ import annotations

import base64
import sqlite3
import struct
import zlib

from fake_openai import FakeOpenAI, request_tokens
from support import Memchat


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG image, small."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_text_file_goes_with_the_next_message_only_and_is_remembered(memchat: Memchat) -> None:
    (memchat.cwd / "notes.md").write_text("the boat is called Petrel\n")
    run = memchat("--user", "ann", input="/attach notes.md\nwhat is the boat called?\nand now?\n")
    assert run.returncode == 0, run.stderr
    assert "attached notes.md (26 bytes, text/markdown): it goes with your next message" in run.stderr
    first, second = run.stdout.split("You said: ")[1:]
    assert "[attached file notes.md (26 bytes, text/markdown)]\nthe boat is called Petrel" in first
    assert second.strip() == "and now?"
    stored = memchat.stored("ann")
    assert stored[0][0] == "you" and "the boat is called Petrel" in stored[0][1]
    assert stored[2] == ("you", "and now?")


def test_an_image_goes_as_image_input_and_the_store_keeps_only_what_it_was(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    image = png()
    (memchat.cwd / "red.png").write_bytes(image)
    run = memchat("--user", "ann", input="/attach red.png\nwhat colour?\nanything else?\n")
    assert run.returncode == 0, run.stderr
    label = f"red.png ({len(image)} bytes, image/png)"
    assert f"[attached image {label}][image image/png, {len(image)} bytes]" in run.stdout.split("\n\n")[1]
    assert memchat.stored("ann")[0] == ("you", f"what colour?\n\n[attached image {label}]")
    # The image is sent once: the next request carries only what it was.
    assert "image_url" not in str(server.requests[-1].body["messages"])
    assert base64.b64encode(image)[:40] not in memchat.db.read_bytes()


def test_a_model_that_takes_no_images_is_one_error_line_and_nothing_is_saved(
    memchat: Memchat, server: FakeOpenAI
) -> None:
    server.no_images = True
    (memchat.cwd / "red.png").write_bytes(png())
    run = memchat("--user", "ann", input="/attach red.png\nwhat colour?\nhello\n")
    assert run.returncode == 1
    assert run.stderr.splitlines()[1] == (
        f"error: {server.url} did not take the image for model 'gpt-5.4-mini': nothing was sent or saved; "
        "switch to a model that reads images (/model NAME), or attach text files only"
    )
    assert run.stdout == "You said: hello\n"
    assert memchat.stored("ann") == [("you", "hello"), ("assistant", "You said: hello")]


def test_with_names_only_the_store_keeps_what_was_attached_not_its_content(memchat: Memchat) -> None:
    (memchat.cwd / "diary.txt").write_text("a private thought\n")
    run = memchat("--user", "ann", input="/attach diary.txt\nread it\n", MEMCHAT_ATTACHMENTS="names")
    assert run.returncode == 0, run.stderr
    assert "a private thought" in run.stdout  # the model had it
    assert memchat.stored("ann")[0] == (
        "you",
        "read it\n\n[attached file diary.txt (18 bytes, text/plain): its content is not kept]",
    )


def test_a_long_text_file_is_cut_to_the_budget(memchat: Memchat, server: FakeOpenAI) -> None:
    (memchat.cwd / "big.log").write_text("line of a log\n" * 80_000)
    run = memchat("--user", "ann", "--context-tokens", "2000", input="/attach big.log\nsummarise\n")
    assert run.returncode == 0, run.stderr
    stored = memchat.stored("ann")[0][1]
    assert "[cut by memchat: the file has 1,120,000 characters; the first 3,000 are here]" in stored
    assert request_tokens(server.requests[-1].body) < 2_000


def test_what_cannot_be_attached_is_one_line_and_the_chat_goes_on(memchat: Memchat) -> None:
    (memchat.cwd / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (memchat.cwd / "fake.png").write_text("not an image")
    run = memchat(input="/attach missing.txt\n/attach .\n/attach blob.bin\n/attach fake.png\n/attach\nhello\n")
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: missing.txt does not exist: give /attach the path of a file",
        "error: . is a folder: /attach takes one file at a time",
        "error: blob.bin is neither text nor an image (application/octet-stream): attach a UTF-8 text file or "
        "a PNG, JPEG, GIF or WebP image",
        "error: fake.png is named as an image but is not a PNG, JPEG, GIF or WebP file",
    ]
    assert "nothing is attached: /attach PATH adds a file to your next message" in run.stderr
    assert run.stdout == "You said: hello\n"


def test_attach_none_takes_the_files_off_the_next_message(memchat: Memchat) -> None:
    (memchat.cwd / "a.txt").write_text("alpha")
    run = memchat(input="/attach a.txt\n/attach none\nhello\n")
    assert "1 file taken off your next message" in run.stderr
    assert run.stdout == "You said: hello\n"


def test_an_attached_file_is_encrypted_at_rest_like_any_message(memchat: Memchat) -> None:
    (memchat.cwd / "secret.txt").write_text("the vault code is zanzibar")
    run = memchat(
        "--user", "ann", input="/attach secret.txt\nremember this\n", MEMCHAT_ENCRYPTION_KEY="a long passphrase"
    )
    assert run.returncode == 0, run.stderr
    assert b"zanzibar" not in memchat.db.read_bytes()
    with sqlite3.connect(memchat.db) as conn:
        assert conn.execute("SELECT count(*) FROM agent_messages").fetchone() == (2,)
    shown = memchat("--user", "ann", input="/history\n", MEMCHAT_ENCRYPTION_KEY="a long passphrase").stdout
    assert "the vault code is zanzibar" in shown


def test_an_image_goes_to_openais_responses_api_as_input_image(memchat: Memchat, server: FakeOpenAI) -> None:
    image = png()
    (memchat.cwd / "red.png").write_bytes(image)
    run = memchat("--user", "ann", input="/attach red.png\nwhat colour?\n", MEMCHAT_API="responses")
    assert run.returncode == 0, run.stderr
    assert f"[image image/png, {len(image)} bytes]" in run.stdout
    sent = server.requests[0]
    assert sent.path.endswith("/responses")
    parts = sent.body["input"][-1]["content"]
    assert [part["type"] for part in parts] == ["input_text", "input_text", "input_image"]


def test_several_text_files_share_half_the_budget(memchat: Memchat, server: FakeOpenAI) -> None:
    for name in ("a.log", "b.log", "c.log"):
        (memchat.cwd / name).write_text(f"{name} line\n" * 1_000)
    attach = "/attach a.log\n/attach b.log\n/attach c.log\n"
    run = memchat("--user", "ann", "--context-tokens", "2000", input=f"{attach}read them\n")
    assert run.returncode == 0, run.stderr
    stored = memchat.stored("ann")[0][1]
    # 3,000 characters in all: the first file takes them, the others the least a file gets.
    assert "the file has 11,000 characters; the first 3,000 are here" in stored
    assert stored.count("the first 1,000 are here") == 2
    assert request_tokens(server.requests[-1].body) < 2_000 * 1.25
