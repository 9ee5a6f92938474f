"""The client commands `chains`, `invoke` and `chat`: each turns argparse's namespace into calls
and every failure into one line on stderr and a status."""

import argparse
import json
import os
import sys

from chainserve.client.arguments import parse_config, parse_input
from chainserve.client.chat import TurnOptions, chat
from chainserve.client.http_client import Client, ClientError
from chainserve.client.tty import for_stream, one_line


def run_command(args: argparse.Namespace) -> int:
    """Run one client command; 0 on success, 1 after an error it explained."""
    client: Client | None = None
    try:
        client = Client(args.url, args.api_key)
        return _dispatch(client, args)
    except ClientError as exc:
        print(f"chainserve: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader left (`| head`): stop quietly; closing the stream cancels the run.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if client is not None:
            client.close()


def _dispatch(client: Client, args: argparse.Namespace) -> int:
    if args.command == "chains":
        for chain in client.chains():
            line = f"{chain['name']}\t{one_line(str(chain.get('description') or ''))}"
            print(for_stream(line, sys.stdout))
        return 0
    if args.command == "invoke":
        chain_input = parse_input(args.input)
        keys = client.chain(args.name).get("configurable") if args.config else None
        output = client.invoke(args.name, chain_input, parse_config(args.config, keys))
        text = output if isinstance(output, str) else json.dumps(output, indent=2)
        print(for_stream(text, sys.stdout))
        return 0
    chain = client.chain(args.name)
    options = TurnOptions(
        configurable=parse_config(args.config, chain.get("configurable")),
        stats=args.stats,
        plain=args.plain,
    )
    return chat(client, chain, args.message, args.thread, options)
