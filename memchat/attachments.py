"""Files attached to the next message (``/attach PATH``, or dropped on the page): text files and images.

A text file goes with the message as text, cut to a share of the context budget. An image
goes as image input, for models that read images. What is stored with the message says what
was attached (name, size, type); a text file's content is stored too unless
``MEMCHAT_ATTACHMENTS=names``, and an image's never: sent again with every later request, it
would fill the budget by itself. The store encrypts the stored part like any message.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from memchat.errors import MemchatError
from memchat.items import Item

# Image types the OpenAI-compatible APIs take as image input.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The largest image sent (OpenAI takes up to 20 MB an image).
MAX_IMAGE_BYTES = 20_000_000
# The largest file read at all: a text file is cut far below this anyway.
MAX_FILE_BYTES = 50_000_000
# What the attached files' text may take of the context budget, together (a half), and each at least.
TEXT_SHARE = 2
MIN_TEXT_CHARS = 1_000
# Characters a token, to turn that share into characters before the server has said (a cautious guess).
CHARS_PER_TOKEN = 3


@dataclass(frozen=True)
class Attachment:
    name: str
    mime: str
    size: int
    # A text file's content, perhaps cut; "" for an image.
    text: str = ""
    # An image's bytes; empty for a text file.
    data: bytes = b""

    @property
    def is_image(self) -> bool:
        return self.mime in IMAGE_TYPES

    @property
    def label(self) -> str:
        return f"{self.name} ({_size(self.size)}, {self.mime})"


def text_room(context_tokens: int, attached: Sequence[Attachment]) -> int:
    """The characters a text file attached now may take: half the budget, less what is attached already."""
    whole = context_tokens // TEXT_SHARE * CHARS_PER_TOKEN
    return max(MIN_TEXT_CHARS, whole - sum(len(item.text) for item in attached))


def read_attachment(path: Path, room: int) -> Attachment:
    """The file at ``path`` as an attachment, its text cut to ``room`` characters; one ``MemchatError`` line
    when it cannot be one."""
    path = path.expanduser()
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise MemchatError(f"{path} is a folder: /attach takes one file at a time")
        if size > MAX_FILE_BYTES:
            raise MemchatError(f"{path} is {_size(size)}: /attach takes files up to {_size(MAX_FILE_BYTES)}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise MemchatError(f"{path} does not exist: give /attach the path of a file") from None
    except OSError as exc:
        raise MemchatError(f"cannot read {path} ({exc.strerror}): check its permissions") from None
    return attachment(path.name, data, room)


def attachment(name: str, data: bytes, room: int, mime: str | None = None) -> Attachment:
    """``data`` of a file called ``name`` as an attachment: an image of a known type, or UTF-8 text cut to
    ``room`` characters."""
    guessed = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
    kind = _image_type(data)
    if guessed in IMAGE_TYPES or kind is not None:
        if kind is None:
            raise MemchatError(f"{name} is named as an image but is not a PNG, JPEG, GIF or WebP file")
        if len(data) > MAX_IMAGE_BYTES:
            raise MemchatError(f"{name} is {_size(len(data))}: images may be up to {_size(MAX_IMAGE_BYTES)}")
        return Attachment(name, kind, len(data), data=data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if "\x00" in text or (data and not text):
        raise MemchatError(
            f"{name} is neither text nor an image ({guessed}): attach a UTF-8 text file or a PNG, JPEG, GIF or WebP image"
        )
    if len(text) > room:
        text = f"{text[:room]}\n[cut by memchat: the file has {len(text):,} characters; the first {room:,} are here]"
    mime = guessed if guessed.startswith("text/") or guessed in ("application/json",) else "text/plain"
    return Attachment(name, mime, len(data), text=text)


def content(text: str, attachments: list[Attachment], *, sent: bool, keep_text: bool = True) -> str | list[Item]:
    """A user message's content: ``text`` alone, or with the attachments as parts.

    ``sent``: as the model gets it (images as image input); otherwise as the store keeps it.
    """
    if not attachments:
        return text
    parts: list[Item] = [{"type": "input_text", "text": text}]
    for item in attachments:
        if item.is_image:
            parts.append({"type": "input_text", "text": f"\n\n[attached image {item.label}]"})
            if sent:
                encoded = base64.b64encode(item.data).decode("ascii")
                parts.append(
                    {"type": "input_image", "image_url": f"data:{item.mime};base64,{encoded}", "detail": "auto"}
                )
        elif sent or keep_text:
            parts.append({"type": "input_text", "text": f"\n\n[attached file {item.label}]\n{item.text}"})
        else:
            parts.append({"type": "input_text", "text": f"\n\n[attached file {item.label}: its content is not kept]"})
    return parts


def _image_type(data: bytes) -> str | None:
    """The image type ``data`` starts like, by its signature, not its name."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _size(count: int) -> str:
    if count < 1_000:
        return f"{count} bytes"
    if count < 1_000_000:
        return f"{count / 1_000:.1f} KB"
    return f"{count / 1_000_000:.1f} MB"
