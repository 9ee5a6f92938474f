"""Streamed Markdown splits into finished blocks only where later text cannot change them."""

import pytest

from chainserve.client.markdown_blocks import MarkdownBlocks

ANSWER = (
    "# Title\n\nPara one\ncont.\n\n```python\nx = 1\n\ny = 2\n```\n\n"
    "- a\n\n  more of a\n- b\n\n~~~~\n~~~\n\n~~~~\n\nEnd"
)


def _split(text: str, step: int) -> tuple[list[str], str]:
    blocks, finished = MarkdownBlocks(), []
    for start in range(0, len(text), step):
        if piece := blocks.feed(text[start : start + step]):
            finished.append(piece)
    return finished, blocks.tail


@pytest.mark.parametrize("step", [1, 2, 7])
def test_blocks_finish_at_blank_lines_outside_fences_whatever_the_token_size(step: int) -> None:
    finished, tail = _split(ANSWER, step)
    assert finished == [
        "# Title\n\n",
        "Para one\ncont.\n\n",
        "```python\nx = 1\n\ny = 2\n```\n\n",  # a blank line inside a fence ends nothing
        "- a\n\n  more of a\n- b\n\n",  # an indented line may continue a list item
        "~~~~\n~~~\n\n~~~~\n\n",  # only a fence as long as the opener closes it
    ]
    assert tail == "End"


def test_one_token_finishing_several_blocks_hands_them_back_together() -> None:
    assert _split(ANSWER, len(ANSWER)) == (["".join(_split(ANSWER, 1)[0])], "End")


def test_recent_lines_of_a_long_code_block_keep_its_fence() -> None:
    blocks = MarkdownBlocks()
    blocks.feed("Intro\n```python\n" + "".join(f"line {i}\n" for i in range(100)) + "line 100")
    assert blocks.recent(3) == "```python\nline 98\nline 99\nline 100"
    blocks.feed("\n```\nafter")
    assert blocks.recent(2) == "```\nafter"
    assert blocks.recent(1000) == blocks.tail


def test_recent_lines_show_the_fence_opener_once_when_it_is_inside_them() -> None:
    blocks = MarkdownBlocks()
    blocks.feed("a\nb\nHere is code:\n```python\n" + "".join(f"line {i}\n" for i in range(5)))
    assert blocks.recent(8) == "Here is code:\n```python\n" + "".join(
        f"line {i}\n" for i in range(5)
    )
    assert blocks.recent(6) == "```python\n" + "".join(f"line {i}\n" for i in range(5))
