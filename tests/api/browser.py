"""A real headless Chromium (Debian's ``chromium``) that can reach nothing but 127.0.0.1.

:func:`render` loads a page the way a person's browser would, runs its scripts,
and returns the DOM once the page is idle, with Chromium's log (console errors,
scripts that failed to load) for the failure message. Every name resolves to
nothing and every other address goes through a proxy nobody listens on, so a
page that needs the internet stays as blank as it would on a centre's machine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser

from gramlink.services.process import free_port

CHROMIUM = shutil.which("chromium")
# Virtual time: runs the page's timers without waiting for them in real time,
# and pauses while a fetch is pending, so the DOM is dumped once the page has
# fetched what it needs and rendered it.
VIRTUAL_TIME_BUDGET_MS = 30_000


@dataclass(frozen=True)
class Rendered:
    dom: str
    log: str  # Chromium's stderr: console messages, loads that failed

    def problems(self) -> str:
        """What is worth reading when a page did not render: its assets, its console."""
        lines = [line for line in self.log.splitlines() if "CONSOLE" in line]
        console = "\n".join(lines[-20:]) or "(no console message)"
        return f"assets: {assets_of(self.dom)}\nconsole:\n{console}"


class _Assets(HTMLParser):
    """The scripts, stylesheets and icons a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") if tag == "script" else found.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def assets_of(html: str) -> list[str]:
    """URLs of the scripts, stylesheets and icons ``html`` loads, in order."""
    parser = _Assets()
    parser.feed(html)
    return parser.urls


def offline_flags(profile: str) -> list[str]:
    nowhere = free_port()  # nobody listens there: every proxied request fails at once
    return [
        "--headless",
        "--no-sandbox",  # tests run as root; the sandbox refuses root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{nowhere}",
        "--proxy-bypass-list=127.0.0.1",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--enable-logging=stderr",
    ]


def render(url: str, timeout_s: float = 90.0) -> Rendered:
    """``url`` rendered by Chromium with no network but loopback."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="gl-chromium-") as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                *offline_flags(profile),
                f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return Rendered(done.stdout, done.stderr)
