"""`mqttgate passwd [USERNAME]`: turn a password into a hash for the users file.

The hash alone goes to stdout, one line, so `mqttgate passwd > hash.txt` or a pipe into a
templating step works; prompts and errors go to stderr. On a terminal the password is
read twice without echo; otherwise one line of stdin is read, so scripts can pipe it in.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from .passwords import hash_password

__all__ = ["main"]

MAX_PASSWORD_CHARS = 4096


def _read_password(username: str | None) -> str | None:
    if sys.stdin.isatty():
        label = f"Password for {username}: " if username else "Password: "
        first = getpass.getpass(label)
        second = getpass.getpass("Repeat password: ")
        if first != second:
            print("error: the passwords differ", file=sys.stderr)
            return None
        return first
    line = sys.stdin.readline(MAX_PASSWORD_CHARS + 2)
    if len(line.rstrip("\r\n")) > MAX_PASSWORD_CHARS:
        print(f"error: password longer than {MAX_PASSWORD_CHARS} characters", file=sys.stderr)
        return None
    return line.rstrip("\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mqttgate passwd",
        description="Read a password and print its argon2id hash for the users file.",
    )
    parser.add_argument("username", nargs="?", help="only used in the prompt")
    args = parser.parse_args(argv)
    try:
        password = _read_password(args.username)
    except (EOFError, KeyboardInterrupt):
        print("error: no password read", file=sys.stderr)
        return 1
    if password is None:
        return 1
    if not password:
        print("error: the password is empty", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
