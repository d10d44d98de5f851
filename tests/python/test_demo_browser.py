"""`overlayd demo`, the README's first command, seen by a real browser: the page comes through the
proxy from the built-in legacy app, and the overlay panel renders the mock model's text, on a
plain page and on the gzip-encoded one. Uses the `browser` fixture of test_browser.py."""
from __future__ import annotations

import re
import socket
import subprocess
import threading

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from overlayd_proc import REPO_ROOT, http_get, overlayd_bin
from test_browser import WAIT, assert_screenshot, browser, island  # noqa: F401  (browser is a fixture)

URL_RE = re.compile(r"page \(Canary 80/20\):\s+(http://\S+)")
ADMIN_RE = re.compile(r"admin:\s+http://(\S+?)/metrics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo():
    port = free_port()
    proc = subprocess.Popen(
        [str(overlayd_bin()), "demo", "--port", str(port), "--admin", "127.0.0.1:0", "--ext-proc-listen", "127.0.0.1:0"],
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
    text = "".join(lines)
    yield URL_RE.search(text).group(1), ADMIN_RE.search(text).group(1)
    proc.terminate()
    assert proc.wait(15) == 0, "".join(lines)


@pytest.mark.parametrize("path", ["/accounts", "/reports"])  # /reports is served gzip-encoded
def test_the_demo_page_shows_the_panel(browser, demo, path):  # noqa: F811
    url, admin = demo
    browser.get(url.rstrip("/") + path)
    result = island(browser)
    assert result["status"] == "ready" and result["text"], result
    panel = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.CSS_SELECTOR, "overlay-panel"))
    WebDriverWait(browser, WAIT).until(lambda d: panel.get_attribute("data-status") == "ready")
    body = browser.execute_script("return arguments[0].shadowRoot.querySelector('.body').textContent", panel)
    assert body == result["text"]
    assert_screenshot(browser, f"demo{path.replace('/', '-')}.png")
    assert http_get(admin, "/readyz").status == 200


def test_a_follow_up_question_from_the_panel_is_answered(browser, demo):  # noqa: F811
    url, _ = demo
    browser.get(url.rstrip("/") + "/accounts")
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
