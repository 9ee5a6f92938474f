"""The `chainserve` command: `serve` runs the server; `chains`, `invoke` and `chat` are a client.

Only `serve` reads the server's settings and imports the app: a client works from any directory
(whatever its .env holds) and starts without loading LangChain.
"""

import argparse
import sys
from collections.abc import Sequence

from chainserve.client.http_client import DEFAULT_URL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainserve", description="Serve LangChain chains over SSE."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server")
    # Defaults come from Settings when serving; the parser is built without them (see above).
    serve.add_argument("--host", help="bind address (default $CHAINSERVE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default $CHAINSERVE_PORT or 8000)")
    serve.add_argument(
        "--reload", action="store_true", help="restart when code changes (development)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--chains",
        action="append",
        metavar="TARGET",
        help="serve your chains: a file (my_chains.py) or module (myapp.chains), optionally "
        ":attr (default CHAINS); repeatable (default $CHAINSERVE_CHAINS)",
    )
    serve.add_argument(
        "--no-examples",
        action="store_true",
        help="serve only your chains, not the shipped examples ($CHAINSERVE_EXAMPLE_CHAINS=false)",
    )
    chains = commands.add_parser("chains", help="list the chains a server serves")
    invoke = commands.add_parser("invoke", help="run a chain once and print its output")
    invoke.add_argument("name", help="chain name")
    invoke.add_argument("--input", required=True, help="the chain's input, as JSON")
    chat = commands.add_parser("chat", help="stream a chain's answers into the terminal")
    chat.add_argument("name", help="chain name")
    chat.add_argument(
        "message",
        nargs="*",
        help="one message, words anywhere after NAME; after `--` words may start with '-' "
        "(piped stdin is appended; neither: a conversation at a prompt)",
    )
    chat.add_argument("--thread", help="continue this thread (chat chains)")
    chat.add_argument("--stats", action="store_true", help="print ttft and tokens/s")
    chat.add_argument(
        "--plain", action="store_true", help="plain text on a terminal too (no Markdown, spinner)"
    )
    for client_command in (chains, invoke, chat):
        client_command.add_argument(
            "--url", help=f"server (default $CHAINSERVE_URL or {DEFAULT_URL})"
        )
        client_command.add_argument("--api-key", help="API key (default $CHAINSERVE_API_KEY)")
    for configurable in (invoke, chat):
        configurable.add_argument(
            "--config", action="append", default=[], metavar="KEY=VALUE", help="configurable key"
        )
    return parser


def message_words(positional: list[str], extra: list[str]) -> tuple[str | None, list[str]]:
    """The chat message from the words argparse placed (those before the first option) and
    those it left over (after options); the leftover options, which are errors. Words after
    `--` are message words even when they start with "-"."""
    before, after = extra, []
    if "--" in extra:
        cut = extra.index("--")
        before, after = extra[:cut], extra[cut + 1 :]
    unknown = [word for word in before if word.startswith("-")]
    words = [*positional, *(w for w in before if not w.startswith("-")), *after]
    return (" ".join(words) if words else None), unknown


def _client_command(args: argparse.Namespace) -> int:
    try:
        from chainserve.client.commands import run_command  # rich: loaded only for a client

        return run_command(args)
    except KeyboardInterrupt:
        # Closing the connection (on exit) is what makes the server cancel the run.
        print("[cancelled]", file=sys.stderr)
        return 130


def _serve(args: argparse.Namespace) -> None:
    from chainserve.api.serve import serve  # the server's imports: only for `serve`

    serve(args)


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "chat":
        # argparse takes positionals only before options: `chat NAME hi --url U there`.
        args.message, extra = message_words(args.message, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        _serve(args)
    else:
        sys.exit(_client_command(args))


if __name__ == "__main__":
    main()
