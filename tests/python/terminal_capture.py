"""A program in a pseudo-terminal whose screen is kept by a terminal emulator (pyte), read back
as text and rendered as an SVG picture: how the tests see Neovim's real TUI, and how the
README's Neovim screenshot is taken."""

import fcntl
import os
import pty
import struct
import termios
import threading
from xml.sax.saxutils import escape

import pyte

# The colours of a dark terminal for the eight ANSI names pyte keeps as words.
ANSI_COLOURS = {
    "black": "1e1e1e", "red": "f14c4c", "green": "23d18b", "yellow": "f5f543", "blue": "3b8eea",
    "magenta": "d670d6", "cyan": "29b8db", "white": "e5e5e5", "brightblack": "666666",
    "brightred": "f14c4c", "brightgreen": "23d18b", "brightyellow": "f5f543", "brightblue": "3b8eea",
    "brightmagenta": "d670d6", "brightcyan": "29b8db", "brightwhite": "ffffff",
}
DEFAULT_FOREGROUND = "d4d4d4"
DEFAULT_BACKGROUND = "14161b"


class Terminal:
    """Runs `argv` in a pseudo-terminal of `columns` x `rows` cells."""

    def __init__(self, argv, env, columns=100, rows=30):
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.lock = threading.Lock()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.stream.feed(data)

    def text(self):
        """The screen as lines of text, trailing blanks cut."""
        with self.lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def svg(self, title):
        """The screen as an SVG picture, each cell in its colours."""
        cell_width, cell_height, font_size = 8.4, 18, 14
        width, height = self.screen.columns * cell_width, self.screen.lines * cell_height
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{font_size}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="100%" height="100%" fill="#{DEFAULT_BACKGROUND}"/>',
        ]
        with self.lock:
            for row in range(self.screen.lines):
                line = self.screen.buffer[row]
                runs = []
                for column in range(self.screen.columns):
                    char = line[column]
                    foreground, background = colour(char.fg, DEFAULT_FOREGROUND), colour(char.bg, DEFAULT_BACKGROUND)
                    if char.reverse:
                        foreground, background = background, foreground
                    style = (foreground, background, char.bold, char.italics, char.underscore)
                    if runs and runs[-1][0] == style:
                        runs[-1][1].append(char.data)
                    else:
                        runs.append((style, [char.data], column))
                y = row * cell_height
                for (foreground, background, bold, italic, underline), characters, start in runs:
                    x = start * cell_width
                    if background != DEFAULT_BACKGROUND:
                        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{len(characters) * cell_width:.1f}" '
                                     f'height="{cell_height}" fill="#{background}"/>')
                    text = "".join(characters)
                    if not text.strip():
                        continue
                    attributes = [f'x="{x:.1f}"', f'y="{y + 14}"', f'fill="#{foreground}"', 'xml:space="preserve"',
                                  f'textLength="{len(characters) * cell_width:.1f}"']
                    if bold:
                        attributes.append('font-weight="bold"')
                    if italic:
                        attributes.append('font-style="italic"')
                    if underline:
                        attributes.append('text-decoration="underline"')
                    parts.append(f"<text {' '.join(attributes)}>{escape(text)}</text>")
        parts.append("</svg>")
        return "\n".join(parts) + "\n"

    def close(self):
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def colour(value, default):
    if value == "default":
        return default
    if value in ANSI_COLOURS:
        return ANSI_COLOURS[value]
    return value if len(value) == 6 else default
