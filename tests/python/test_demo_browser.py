"""`overlayd demo`, the README's first command, seen by a real browser: the banner's first line is
the console's URL and the console shows the demo's apps; the page comes through the proxy from the
built-in legacy app, and the overlay panel renders the mock model's text, on a plain page and on
the gzip-encoded one; a split changed through the console reaches the demo's proxy within 2 s, the
demo's reports reach the console, and a rollback returns 80/20. Uses the `browser` fixture of
test_browser.py."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from overlayd_proc import REPO_ROOT, http_get, overlayd_bin
from test_browser import WAIT, assert_screenshot, browser, island  # noqa: F401  (browser is a fixture)

URL_RE = re.compile(r"page \(Canary 80/20\):\s+(http://\S+)")
ADMIN_RE = re.compile(r"admin:\s+http://(\S+?)/metrics")
CONSOLE_RE = re.compile(r"\Aconsole:\s+http://(\S+?)/\s")
TOKEN_RE = re.compile(r"operator token:\s+(\S+)\s+\(for changes on the console; in (\S+)/operator\.token\)")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Demo:
    page: str      # the proxy's Canary page URL
    admin: str     # HOST:PORT
    console: str   # HOST:PORT
    token: str
    data: Path     # the demo's temporary store
    banner: str

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://{self.console}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def demo():
    port = free_port()
    proc = subprocess.Popen(
        [str(overlayd_bin()), "demo", "--port", str(port), "--admin", "127.0.0.1:0", "--ext-proc-listen", "127.0.0.1:0",
         "--console", "127.0.0.1:0", "--report-interval", "1"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if URL_RE.search("".join(lines)) and ADMIN_RE.search("".join(lines)):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(60) and URL_RE.search("".join(lines)), "overlayd demo did not print its URLs:\n" + "".join(lines)
    text = "".join(line for line in lines if not re.match(r"\d{4}-\d\d-\d\dT", line))  # the banner, not the logs
    console, token = CONSOLE_RE.search(text), TOKEN_RE.search(text)
    assert console and token, text
    yield Demo(URL_RE.search(text).group(1), ADMIN_RE.search(text).group(1), console.group(1), token.group(1),
               Path(token.group(2)), text)
    proc.terminate()
    assert proc.wait(15) == 0, "".join(lines)
    # The demo's temporary store is removed when it stops.
    assert not Path(token.group(2)).exists(), token.group(2)


def wait_for(condition, timeout: float, what: str):
    """An explicit wait on any condition (WebDriverWait's loop without a driver)."""
    return WebDriverWait(None, timeout, poll_frequency=0.05).until(lambda _: condition(), f"waited {timeout} s for {what}")


def served_version(demo: Demo) -> str | None:
    """The control-plane version the demo's sidecar serves (the ETag of the document it applied)."""
    status = json.loads(http_get(demo.admin, "/config").body)
    fetch = status.get("lastFetch") or {}
    return fetch["etag"].strip('"') if fetch.get("etag") and status["lastResult"] in ("applied", "unchanged") else None


def canary_weights(demo: Demo) -> dict[str, int]:
    """The weights of crm-canary in the document the demo's sidecar serves."""
    documents = yaml.safe_load_all(http_get(demo.admin, "/v1/desired-state").text)
    canary = next(d for d in documents if d and d["kind"] == "AIOverlay" and d["metadata"]["name"] == "crm-canary")
    return {m["name"]: m["weight"] for m in canary["spec"]["models"]}


def test_the_banners_first_line_is_the_console_and_it_shows_the_demos_apps(browser, demo):  # noqa: F811
    assert demo.banner.startswith("console:"), demo.banner
    assert demo.data.is_dir() and (demo.data / "overlayd.sqlite").is_file()
    browser.get(f"http://{demo.console}/#/")
    for name in ("crm-canary", "crm-shadow"):
        WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"tr[data-overlay={name}]"))
    # The demo's sidecar reports to its console: the fleet table lists it, at version 1.
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".fleet table tbody tr"))
    fleet = json.loads(http_get(demo.console, "/v1/fleet").body)
    assert [i["version"] for i in fleet["instances"]] == ["1"], fleet
    assert_screenshot(browser, "demo-console.png")


def test_a_split_changed_on_the_console_reaches_the_demos_proxy_and_a_rollback_returns_it(demo):
    wait_for(lambda: served_version(demo) == "1", WAIT, "the demo's first fetch from its console")
    assert canary_weights(demo) == {"mock-fast": 80, "mock-smart": 20}
    status, reply = demo.api("PUT", "/v1/overlays/crm-canary/weights", {"weights": {"mock-fast": 50, "mock-smart": 50}})
    assert status == 200, reply
    changed = str(reply["version"])
    started = time.monotonic()
    wait_for(lambda: served_version(demo) == changed, 2.0, f"the demo's proxy to serve version {changed}")
    assert time.monotonic() - started < 2.0
    assert canary_weights(demo) == {"mock-fast": 50, "mock-smart": 50}
    # The next report carries the new version to the console's fleet view.
    wait_for(lambda: [i["version"] for i in json.loads(http_get(demo.console, "/v1/fleet").body)["instances"]] == [changed],
             10.0, "the fleet view to show the new version")
    status, reply = demo.api("POST", "/v1/rollback", {"version": 1})
    assert status == 200, reply
    rolled = str(reply["version"])
    wait_for(lambda: served_version(demo) == rolled, 2.0, f"the demo's proxy to serve version {rolled}")
    assert canary_weights(demo) == {"mock-fast": 80, "mock-smart": 20}


@pytest.mark.parametrize("path", ["/accounts", "/reports"])  # /reports is served gzip-encoded
def test_the_demo_page_shows_the_panel(browser, demo, path):  # noqa: F811
    browser.get(demo.page.rstrip("/") + path)
    result = island(browser)
    assert result["status"] == "ready" and result["text"], result
    panel = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.CSS_SELECTOR, "overlay-panel"))
    WebDriverWait(browser, WAIT).until(lambda d: panel.get_attribute("data-status") == "ready")
    body = browser.execute_script("return arguments[0].shadowRoot.querySelector('.body').textContent", panel)
    assert body == result["text"]
    # The mock models answer about the page they were asked for, in sentences.
    assert path in body and body.rstrip().endswith("."), body
    assert_screenshot(browser, f"demo{path.replace('/', '-')}.png")
    assert http_get(demo.admin, "/readyz").status == 200


def test_a_follow_up_question_from_the_panel_is_answered(browser, demo):  # noqa: F811
    browser.get(demo.page.rstrip("/") + "/accounts")
    panel = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.CSS_SELECTOR, "overlay-panel"))
    WebDriverWait(browser, WAIT).until(lambda d: panel.get_attribute("data-status") == "ready")
    root = panel.shadow_root
    root.find_element(By.CSS_SELECTOR, "input").send_keys("Which account is largest?")
    root.find_element(By.CSS_SELECTOR, "form button").click()

    def answered(driver):
        text = driver.execute_script("return arguments[0].shadowRoot.querySelector('.body').textContent", panel)
        return "“Which account is largest?”" in text and text

    text = WebDriverWait(browser, WAIT).until(answered, "the panel never showed the answer to the question")
    assert panel.get_attribute("data-status") == "ready", text
