"""Starting points for the add form: the common kinds of server a person runs, each a set
of field values to start from and a sentence of help. Pure data."""

from __future__ import annotations

from typing import Any

STARTERS: dict[str, dict[str, Any]] = {
    "python": {
        "label": "Python script",
        "values": {"command": "python app.py", "port": "auto", "health_type": "tcp"},
        "help": "Put your script's name in place of app.py and its folder below. Your script gets its port "
                "in the PORT environment variable (or write {port} in the command where the port goes).",
    },
    "bot": {
        "label": "Bot or worker (no web page)",
        "values": {"command": "python bot.py", "port": "", "health_type": "running"},
        "help": "For a program that works without a web page: a chat bot, a worker, a job runner. It gets "
                "no port; it counts as working once it has kept running for 5 s. Put your script's name in "
                "place of bot.py and its folder below.",
    },
    "node": {
        "label": "Node app",
        "values": {"command": "node server.js", "port": "auto", "health_type": "tcp"},
        "help": "Put your app's main file in place of server.js and its folder below. "
                "Read the port from process.env.PORT.",
    },
    "static": {
        "label": "Folder of files (a website)",
        "values": {"command": "python -m http.server {port} --bind 127.0.0.1", "port": "auto",
                   "health_type": "http", "health_path": "/"},
        "help": "Shows the files of a folder as a website. Write the folder below, e.g. C:\\Users\\you\\site.",
    },
    "windows": {
        "label": "Windows .exe or .bat",
        "values": {"command": "C:\\path\\to\\program.exe", "port": "auto", "health_type": ""},
        "help": "Write the full path of the program; put it in \"double quotes\" if it has spaces. "
                "For a .bat file write: cmd /c C:\\path\\to\\start.bat",
    },
    "program": {
        "label": "Any program",
        "values": {"command": "", "port": "auto", "health_type": ""},
        "help": "The command you would type in a terminal. {port} becomes the port it should listen on.",
    },
}
