"""The Neovim plugin (`editors/nvim`) in a real headless Neovim 0.12, driven over its RPC API
(pynvim) as a user types: the plugin starts the real `modeld lsp` against the test daemons,
the ghost text appears (Neovim's built-in inline completion, and the plugin's own rendering
used on 0.11), Tab accepts it into the buffer; `:Modeld chat` streams into its buffer; and
`:checkhealth modeld` says when the daemon is missing."""

import os
import tempfile

import pynvim
import pytest

from conftest import FIM, MODEL, free_port, wait_for
from terminal_capture import Terminal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, "editors", "nvim")
# tiny_models::FIM_MIDDLE_TEXT
FIM_MIDDLE_TEXT = "return left + right"

SETUP = """
local plugin, binary, host, model, builtin = ...
vim.opt.rtp:prepend(plugin)
vim.cmd('runtime plugin/modeld.lua')
require('modeld').setup({
  cmd = { binary, 'lsp' },
  cmd_env = { OLLAMA_HOST = host, MODELD_LSP_NO_AUTOSTART = '1' },
  model = model,
  builtin_ghost_text = builtin,
})
"""

GHOST_TEXT = """
local namespace = ...
local id = vim.api.nvim_get_namespaces()[namespace]
if not id then return '' end
local texts = {}
for _, mark in ipairs(vim.api.nvim_buf_get_extmarks(0, id, 0, -1, { details = true })) do
  for _, chunk in ipairs(mark[4].virt_text or {}) do table.insert(texts, chunk[1]) end
  for _, line in ipairs(mark[4].virt_lines or {}) do
    for _, chunk in ipairs(line) do table.insert(texts, '\\n' .. chunk[1]) end
  end
end
return table.concat(texts)
"""


def nvim_binary():
    binary = os.environ.get("MODELD_NVIM")
    assert binary and os.path.exists(binary), "set MODELD_NVIM to Neovim 0.12 (scripts/test.sh does)"
    return binary


class Editor:
    """A headless Neovim with the plugin set up against a daemon."""

    def __init__(self, host, model, builtin=True, terminal=False):
        self.directory = tempfile.mkdtemp()
        self.terminal = None
        if terminal:
            # Neovim's own TUI in a pseudo-terminal, driven through its RPC socket.
            socket = os.path.join(self.directory, "nvim.socket")
            env = dict(os.environ, TERM="xterm-256color", COLORTERM="truecolor")
            self.terminal = Terminal([nvim_binary(), "--clean", "--listen", socket], env, columns=90, rows=12)
            wait_for(lambda: os.path.exists(socket), what="Neovim's socket")
            self.nvim = pynvim.attach("socket", path=socket)
        else:
            self.nvim = pynvim.attach("child", argv=[nvim_binary(), "--embed", "--headless", "--clean"])
        self.nvim.exec_lua(SETUP, PLUGIN, os.environ["MODELD_BIN"], host, model, builtin)
        self.nvim.command(f"cd {self.directory}")

    def open(self, name, text):
        path = os.path.join(self.directory, name)
        with open(path, "w") as file:
            file.write(text)
        self.nvim.command(f"edit {name}")
        wait_for(lambda: self.nvim.exec_lua("return #vim.lsp.get_clients({ bufnr = 0, name = 'modeld' })") > 0,
                 what="the modeld client to attach")
        return path

    def ghost_text(self, namespace):
        return self.nvim.exec_lua(GHOST_TEXT, namespace)

    def line(self, number):
        return self.nvim.current.buffer[number - 1]

    def close(self):
        try:
            self.nvim.command("qa!")
        except Exception:
            pass
        self.nvim.close()
        if self.terminal:
            self.terminal.close()


@pytest.fixture
def editors():
    opened = []

    def open_editor(*arguments, **keywords):
        editor = Editor(*arguments, **keywords)
        opened.append(editor)
        return editor
    yield open_editor
    for editor in opened:
        editor.close()


@pytest.mark.parametrize("builtin, namespace", [(True, "nvim.lsp.inline_completion"), (False, "modeld.ghost")])
def test_ghost_text_appears_and_tab_accepts_it(tiny_daemon, editors, builtin, namespace):
    editor = editors(tiny_daemon.host, FIM, builtin=builtin)
    editor.open("add.py", "def add(left, right):\n    \n\nprint(add(1, 2))\n")
    editor.nvim.command("call cursor(2, 5)")
    editor.nvim.input("A")
    ghost = wait_for(lambda: editor.ghost_text(namespace), what="ghost text")
    assert ghost.startswith(FIM_MIDDLE_TEXT), ghost
    editor.nvim.input("<Tab>")
    wait_for(lambda: editor.line(2) == "    " + FIM_MIDDLE_TEXT, timeout=10, what="the accepted text")
    assert editor.nvim.api.get_mode()["mode"] == "i"
    assert editor.line(4) == "print(add(1, 2))"
    # Without a suggestion, Tab is a Tab.
    editor.nvim.input("<Esc>")
    assert editor.ghost_text(namespace) == ""


def test_accept_a_word_of_the_suggestion(tiny_daemon, editors):
    editor = editors(tiny_daemon.host, FIM, builtin=False)
    editor.open("add.py", "def add(left, right):\n    \n")
    editor.nvim.command("call cursor(2, 5)")
    editor.nvim.input("A")
    wait_for(lambda: editor.ghost_text("modeld.ghost"), what="ghost text")
    editor.nvim.input("<C-Right>")
    wait_for(lambda: editor.line(2) == "    return", timeout=10, what="one word accepted")


def test_real_weights_complete_a_line_in_neovim(daemon, editors):
    editor = editors(daemon.host, MODEL)
    editor.open("real.py", "def add(left, right):\n    return \n")
    editor.nvim.command("call cursor(2, 11)")
    editor.nvim.input("A")
    ghost = wait_for(lambda: editor.ghost_text("nvim.lsp.inline_completion"), timeout=120, what="ghost text")
    editor.nvim.input("<Tab>")
    wait_for(lambda: editor.line(2) != "    return ", timeout=10, what="the accepted text")
    assert editor.line(2).startswith("    return ")
    assert ghost.split("\n")[0].strip() in editor.line(2)


def test_the_ghost_text_shows_in_neovims_terminal(daemon, editors):
    """Real weights in Neovim's real TUI: the ghost text is on the terminal's screen, next to the
    typed code, and Tab puts it in the buffer. The picture is the README's screenshot."""
    editor = editors(daemon.host, MODEL, terminal=True)
    editor.open("real.py", "def add(left, right):\n    return \n\nprint(add(1, 2))\n")
    editor.nvim.command("set termguicolors number")
    editor.nvim.command("call cursor(2, 11)")
    editor.nvim.input("A")
    ghost = wait_for(lambda: editor.ghost_text("nvim.lsp.inline_completion"), timeout=120, what="ghost text")
    first_line = ghost.split("\n")[0]
    screen_line = wait_for(lambda: next((line for line in editor.terminal.text().split("\n")
                                         if "return " + first_line.rstrip() in line), None),
                           timeout=10, what="the ghost text on the terminal's screen")
    assert screen_line.lstrip().startswith("2 "), screen_line
    folder = os.environ.get("MODELD_SCREENSHOTS") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "neovim-ghost-text.svg"), "w") as picture:
        picture.write(editor.terminal.svg("Neovim: modeld's ghost text"))
    editor.nvim.input("<Tab>")
    wait_for(lambda: editor.line(2) != "    return ", timeout=10, what="the accepted text")
    assert editor.line(2).startswith("    return ") and first_line.strip() in editor.line(2), (ghost, editor.line(2))


def test_chat_streams_into_its_buffer(daemon, editors):
    editor = editors(daemon.host, MODEL)
    editor.open("chat.py", "def add(left, right):\n    return left + right\n")
    editor.nvim.exec_lua("vim.api.nvim_create_autocmd('User', { pattern = 'ModeldChatDone', "
                         "callback = function() vim.g.modeld_chat_done = true end })")
    editor.nvim.command("1,2Modeld chat What does this function return?")
    chat = wait_for(lambda: editor.nvim.exec_lua("local b = vim.fn.bufnr('modeld://chat'); "
                                                 "return b ~= -1 and b or nil"), what="the chat buffer")
    lines_seen = []

    def streamed():
        lines = editor.nvim.exec_lua("return vim.api.nvim_buf_get_lines(...)", chat, 0, -1, False)
        lines_seen.append(len("\n".join(lines)))
        return editor.nvim.vars.get("modeld_chat_done")
    wait_for(streamed, timeout=180, what="the chat answer")
    text = "\n".join(editor.nvim.exec_lua("return vim.api.nvim_buf_get_lines(...)", chat, 0, -1, False))
    assert text.startswith("## What does this function return?"), text
    answer = text.split("\n", 2)[2]
    assert len(answer.strip()) > 10 and "(modeld:" not in answer, text
    # It grew while the answer streamed, not in one piece at the end.
    assert len(set(lines_seen)) > 2, lines_seen


def test_checkhealth_reports_a_missing_daemon(editors):
    editor = editors(f"127.0.0.1:{free_port()}", MODEL)
    editor.nvim.command("checkhealth modeld")
    report = "\n".join(editor.nvim.current.buffer[:])
    assert "the modeld daemon is not running" in report, report
    assert "ERROR" not in report, report


def test_the_model_list_is_read_from_modeld_list(editors):
    editor = editors("127.0.0.1:1", MODEL)
    names = editor.nvim.exec_lua("return require('modeld.models').parse_list(...)",
                                 "NAME            ID              SIZE      MODIFIED\n"
                                 "smollm2:135m    0123456789ab    100 MB    2 minutes ago\n"
                                 "tiny-fim:latest ba9876543210    1 MB      1 minute ago\n")
    assert names == ["smollm2:135m", "tiny-fim:latest"]


def test_the_plugin_installs_as_a_neovim_package():
    """The README's install without a plugin manager: the folder linked into a package's
    `start` directory loads the plugin, and `setup()` configures and enables the server."""
    packages = tempfile.mkdtemp()
    os.makedirs(os.path.join(packages, "pack", "modeld", "start"))
    os.symlink(PLUGIN, os.path.join(packages, "pack", "modeld", "start", "modeld"))
    nvim = pynvim.attach("child", argv=[nvim_binary(), "--embed", "--headless", "--clean",
                                        "--cmd", f"set packpath^={packages}"])
    try:
        assert nvim.eval("exists(':Modeld')") == 2
        nvim.exec_lua("require('modeld').setup({ cmd_env = { MODELD_LSP_NO_AUTOSTART = '1' } })")
        assert nvim.exec_lua("return vim.lsp.config.modeld.cmd[1]") == "modeld"
        assert nvim.exec_lua("return vim.lsp.is_enabled('modeld')")
    finally:
        nvim.close()
