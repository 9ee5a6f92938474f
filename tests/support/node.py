"""Run the AI SDK check script (tests/node) with Node, or skip with a reason when unavailable."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.unavailable import unavailable

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def read_with_ai_sdk(*args: str) -> dict[str, Any]:
    """What the AI SDK's parser and `readUIMessageStream` make of a UI message stream."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (.ci/run installs Debian's nodejs)")
    if not (NODE_DIR / "node_modules" / "ai").is_dir():
        unavailable("the AI SDK is not installed: run `make node-deps`")
    result = subprocess.run(
        [str(node), str(NODE_DIR / "read_ui_stream.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed
