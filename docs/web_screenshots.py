"""Take docs/web-login.png and docs/web-chat.png: the page as a new user sees it, against the test server.

It starts ``memchat web`` on a memory of its own in a temporary folder, sets
alice's password, and drives Debian's Chromium (``apt-get install chromium``).
Run it after changing how the page looks:

    .venv/bin/python docs/web_screenshots.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_openai import FakeOpenAI  # noqa: E402
from support import AGENT, clean_env  # noqa: E402
from web_page import CHROMIUM, CHROMIUM_ARGS, running_web  # noqa: E402

PASSWORD = "alice-password-1"
SIZE = {"width": 1100, "height": 720}


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as home, FakeOpenAI() as server:
        cwd = Path(home)
        env = clean_env(cwd, OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-screenshots")
        subprocess.run([sys.executable, str(AGENT), "passwd", "alice"], input=PASSWORD.encode(), cwd=cwd, env=env)
        subprocess.run([sys.executable, str(AGENT), "--user", "alice"], input=b"my name is Alice\n", cwd=cwd, env=env)
        with running_web(cwd, env) as served, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=SIZE)
            page.goto(served.url)
            page.get_by_label("User id").fill("alice")
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("memchat passwd YOUR_ID").wait_for()
            page.wait_for_timeout(6000)  # Chainlit's pop-up fades
            page.screenshot(path=DOCS / "web-login.png")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("button", name="undo").wait_for(timeout=30_000)
            for text in ("what's my name?", "[[markdown]] how do I count the words in a file?"):
                page.locator("#chat-input").fill(text)
                page.wait_for_timeout(500)
                page.locator("#chat-submit").click()
                page.wait_for_timeout(2500)
            page.screenshot(path=DOCS / "web-chat.png")
            browser.close()


if __name__ == "__main__":
    main()
