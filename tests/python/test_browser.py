"""The overlay in a real browser: headless Chromium (selenium + chromedriver) loads a legacy app's
pages through :class:`envoy_harness.EnvoyHarness` (a stand-in for Envoy) and the real overlayd.

Checked: the page itself is intact; overlay.js mounts ``<overlay-panel>``, renders the injected
result in its Shadow DOM, and the legacy app's "style everything" CSS does not reach it; a
result that misses the latency budget turns from pending to ready in the page by overlay.js
polling ``/__overlay/results/{token}`` through the proxy. A screenshot is saved to
``tests/python/artifacts/browser-overlay.png``.

Needs ``chromium`` and ``chromedriver`` on PATH (Debian: ``chromium``, ``chromium-driver``; .ci/run
installs them): without them the tests fail, they are never skipped. The browser may only reach
127.0.0.1 (every other host name fails to resolve; no proxy; background networking off).
"""
from __future__ import annotations

import json
import re
import shutil
import struct
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from envoy_harness import EnvoyHarness, LegacyApp
from overlayd_proc import OverlaydProcess

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WINDOW = (1280, 800)
WAIT = 20.0  # bound of every explicit wait

CONFIG = """\
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {name: fast-mock}
spec: {provider: mock}
---
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {name: slow-mock}
spec: {provider: mock, mock: {latency: 1500ms}}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: crm}
spec:
  hostApp: crm.example.com
  models: [{name: fast-mock}]
  injection: {latencyBudget: 2s, json: {paths: ["/api/"]}}
---
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {name: late}
spec:
  hostApp: late.example.com
  models: [{name: slow-mock}]
  injection: {latencyBudget: 50ms}
"""

# Installed before every document: records each data-status the panel takes, with the text shown
# at that moment, so a transition is observed however fast it happens (no timing assumptions).
STATUS_RECORDER = """
window.__overlayStatuses = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    if (r.target.localName !== "overlay-panel") return;
    var body = r.target.shadowRoot && r.target.shadowRoot.querySelector(".body");
    window.__overlayStatuses.push([r.target.getAttribute("data-status"), body ? body.textContent : null]);
  });
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-status"]});
"""

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", "--force-device-scale-factor=1",
    # 127.0.0.1 only: no proxy, no other host resolves, no background traffic.
    "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--no-first-run", "--no-default-browser-check",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def overlayd(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser") / "overlays.yaml"
    path.write_text(CONFIG)
    process = OverlaydProcess(path).start()
    yield process
    assert process.stop() == 0, process.describe()


@pytest.fixture(scope="module")
def legacy_app():
    app = LegacyApp().start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def crm(overlayd, legacy_app):
    harness = EnvoyHarness(overlayd.grpc_target, legacy_app.address, "crm.example.com").start()
    yield harness
    harness.stop()


@pytest.fixture(scope="module")
def late(overlayd, legacy_app):
    harness = EnvoyHarness(overlayd.grpc_target, legacy_app.address, "late.example.com").start()
    yield harness
    harness.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail(f"the browser tests need chromium and chromedriver on PATH (found chromium={chromium}, "
                    f"chromedriver={chromedriver}); on Debian: apt-get install chromium chromium-driver "
                    "(.ci/run installs them)", pytrace=False)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = chromium
    for arg in CHROMIUM_ARGS + [f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    with warnings.catch_warnings():  # deprecated for ClientConfig, which webdriver.Chrome 4.27 cannot take yet
        warnings.simplefilter("ignore", DeprecationWarning)
        options.ignore_local_proxy_environment_variables()  # selenium -> chromedriver directly, never via a proxy
    # An explicit driver path: Selenium Manager (which would download drivers) is never run.
    service = Service(executable_path=chromedriver, log_output=str(profile.parent / "chromedriver.log"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as err:
        pytest.fail(f"cannot start headless chromium ({chromium}) with {chromedriver}: {err}", pytrace=False)
    driver.set_page_load_timeout(WAIT)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": STATUS_RECORDER})
    yield driver
    driver.quit()


# ------------------------------------------------------------------------------ helpers


def island(driver) -> dict:
    """The result overlayd injected (the page's ``#overlayd-result`` data island)."""
    node = driver.find_element(By.CSS_SELECTOR, 'script#overlayd-result[data-overlayd][type="application/json"]')
    return json.loads(node.get_attribute("textContent"))


def wait_for_status(driver, panel, status: str, what: str, harness: EnvoyHarness) -> None:
    WebDriverWait(driver, WAIT).until(
        lambda d: panel.get_attribute("data-status") == status,
        f"{what}: overlay-panel data-status still {panel.get_attribute('data-status')!r} after {WAIT}s; "
        f"statuses seen {statuses(driver)}; exchanges:\n{harness.describe()}")


def statuses(driver) -> list[list]:
    return driver.execute_script("return window.__overlayStatuses || []")


def computed(driver, element, prop: str) -> str:
    return driver.execute_script("return getComputedStyle(arguments[0]).getPropertyValue(arguments[1])",
                                 element, prop)


def assert_screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    assert driver.save_screenshot(str(path)), "save_screenshot failed"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    viewport = tuple(driver.execute_script("return [innerWidth, innerHeight]"))
    assert (width, height) == viewport, f"screenshot is {width}x{height}, the viewport {viewport}"
    assert len(data) > 10_000, f"{path} is only {len(data)} bytes: an empty page?"
    return path


def assert_no_harness_errors(*harnesses: EnvoyHarness) -> None:
    for harness in harnesses:
        failed = [e for e in harness.exchanges() if e.error]
        assert not failed, f"the harness ({harness.authority}) failed exchanges:\n{harness.describe()}"


# ------------------------------------------------------------------------------ tests


def test_the_overlay_renders_in_shadow_dom_and_the_page_stays_intact(browser, crm, legacy_app):
    browser.get(crm.url("/accounts"))

    # The legacy page itself: its title, heading and table, styled by its own CSS.
    assert browser.title == "Accounts"
    h1 = browser.find_element(By.TAG_NAME, "h1")
    assert h1.text == "Accounts"
    assert len(browser.find_elements(By.CSS_SELECTOR, "table tr")) == 4
    assert computed(browser, h1, "font-size") == "40px", "control: the legacy CSS is in effect on the page"

    # What overlayd injected, and what the host app was told.
    result = island(browser)
    assert result["status"] == "ready" and result["overlay"] == "crm" and result["model"] == "fast-mock", result
    expected = result["text"]
    assert expected and "/accounts on crm.example.com" in expected, result  # the mock talks about the page
    page = crm.exchanges("/accounts")[-1]
    assert page.rewritten and page.body_to_overlayd, crm.describe()
    assert ("/accounts", "fast-mock") in [(p, h.get("x-overlay-model")) for p, h in legacy_app.seen]

    # overlay.js: the element, its status, the text in its shadow root.
    panel = WebDriverWait(browser, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "body > overlay-panel"),
        f"no <overlay-panel> in the page; exchanges:\n{crm.describe()}")
    wait_for_status(browser, panel, "ready", "/accounts", crm)
    shadow = panel.shadow_root
    body = shadow.find_element(By.CSS_SELECTOR, ".body")
    assert body.get_property("textContent") == expected
    assert body.is_displayed() and body.size["height"] > 0
    assert shadow.find_element(By.CSS_SELECTOR, ".meta").get_property("textContent") == "model: fast-mock"
    assert statuses(browser) == [["ready", expected]], "ready from the start: never pending"
    script = crm.exchanges("/__overlay/overlay.js")
    assert script and all(e.immediate and e.status in (200, 304) for e in script), crm.describe()

    assert_screenshot(browser, "browser-overlay.png")  # before the isolation checks: it shows a failure too

    # Shadow DOM isolation: the page's `* {color: red !important; font-size: 40px; font-family: serif}`
    # reaches neither the panel (the shadow host) nor the text inside it.
    for element, what in ((panel, "<overlay-panel>"), (body, "its .body")):
        style = {prop: computed(browser, element, prop) for prop in ("font-size", "color", "font-family")}
        assert style["font-size"] != "40px" and style["color"] != "rgb(255, 0, 0)" \
            and style["font-family"] != "serif", f"the host page's CSS reaches {what}: {style}"
    assert_no_harness_errors(crm)


def test_a_late_result_turns_from_pending_to_ready_in_the_page(browser, late):
    browser.get(late.url("/invoices"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Open invoices"

    result = island(browser)
    assert result["status"] == "pending" and result["overlay"] == "late", result
    token = result["token"]
    assert re.fullmatch(r"[0-9a-f]{32}", token), result

    panel = WebDriverWait(browser, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "body > overlay-panel"),
        f"no <overlay-panel> in the page; exchanges:\n{late.describe()}")
    wait_for_status(browser, panel, "ready", "/invoices", late)

    # overlay.js polled the result through the proxy, which overlayd answered itself.
    polls = late.exchanges("/__overlay/results/")
    assert polls and all(e.path == f"/__overlay/results/{token}" and e.immediate and e.status == 200
                         for e in polls), late.describe()
    answers = [json.loads(e.body) for e in polls]
    assert answers[-1]["status"] == "ready" and answers[-1]["token"] == token, answers
    assert all(a["status"] == "pending" for a in answers[:-1]), answers
    text = answers[-1]["text"]
    assert text and "/invoices on late.example.com" in text, answers[-1]

    shadow = panel.shadow_root
    assert shadow.find_element(By.CSS_SELECTOR, ".body").get_property("textContent") == text
    assert shadow.find_element(By.CSS_SELECTOR, ".meta").get_property("textContent") == "model: slow-mock"
    assert statuses(browser) == [["pending", "Thinking…"], ["ready", text]]

    assert_screenshot(browser, "browser-overlay-late.png")
    assert_no_harness_errors(late)


def test_the_harness_enriches_json_and_passes_other_bodies_through(crm):
    """No browser: the legacy app's JSON API (under injection.json.paths) gets the result as a
    member; a response overlayd does not rewrite (404 text/plain) is not even sent to it
    (mode_override response_body_mode NONE) and reaches the client unchanged."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(crm.url("/api/accounts"), timeout=WAIT) as reply:
        data = json.loads(reply.read())
    assert data["accounts"] == [{"name": "Acme Corp", "balance": 12400}]
    assert data["overlay"]["status"] == "ready" and "/api/accounts" in data["overlay"]["text"], data

    with pytest.raises(urllib.error.HTTPError) as missing:
        opener.open(crm.url("/no-such-page"), timeout=WAIT)
    assert missing.value.code == 404 and missing.value.read() == b"not found\n"
    exchange = crm.exchanges("/no-such-page")[-1]
    assert not exchange.body_to_overlayd and not exchange.rewritten, crm.describe()
    assert_no_harness_errors(crm)
