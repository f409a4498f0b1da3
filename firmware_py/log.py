"""The board's console log: one line per event a technician at the USB console wants to see (boot,
Wi-Fi, broker, devices going offline and back, per-bus errors), at the level the compiled config sets
(`"log_level"`: "debug", "info" (default), "warning", "error"; `fieldlink firmware config --log-level`).

    fieldlink: INFO boot gw1 (demo): 2 buses, 8 devices
    fieldlink: WARNING bus meters: flat-101-power offline: no reply to 3 polls (timeout)

Lines go to the console with print() (the USB serial REPL on a board, stdout under the VM); nothing is
kept, so the log costs no flash and no heap between lines.
"""

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}

level = INFO


def set_level(name: object) -> None:
    """Set the level by name; an unknown name keeps INFO (the compiler only writes known names)."""
    global level
    level = LEVELS.get(name, INFO) if type(name) is str else INFO


def enabled(lvl: int) -> bool:
    return lvl >= level


def log(lvl: int, text: str) -> None:
    if lvl >= level:
        print("fieldlink: %s %s" % (NAMES.get(lvl, "INFO"), text))


def debug(text: str) -> None:
    log(DEBUG, text)


def info(text: str) -> None:
    log(INFO, text)


def warning(text: str) -> None:
    log(WARNING, text)


def error(text: str) -> None:
    log(ERROR, text)
