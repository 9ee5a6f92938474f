"""Run the check scripts in tests/node (the AI SDK, the OpenAI SDK) with Node, or skip with a
reason when Node or the package is unavailable."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.unavailable import unavailable

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def node_command(script: str, *args: str) -> list[str]:
    """The command that runs `tests/node/<script>` with the AI SDK importable."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (.ci/run installs Debian's nodejs)")
    if not (NODE_DIR / "node_modules" / "ai").is_dir():
        unavailable("the AI SDK is not installed: run `make node-deps`")
    return [str(node), str(NODE_DIR / script), *args]


def read_with_ai_sdk(*args: str) -> dict[str, Any]:
    """What the AI SDK's parser and `readUIMessageStream` make of a UI message stream."""
    return run_node_script("read_ui_stream.mjs", *args)


def run_node_script(script: str, *args: str, package: str = "ai") -> dict[str, Any]:
    """The JSON a script in tests/node prints, run with Node; skipped when Node or the npm
    `package` it needs is not installed."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (.ci/run installs Debian's nodejs)")
    if not (NODE_DIR / "node_modules" / package).is_dir():
        unavailable(f"the npm package {package!r} is not installed: run `make node-deps`")
    result = subprocess.run(
        [str(node), str(NODE_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed
