"""Checking a fine-tuning file line by line before its job trains, as OpenAI checks it: the chat format (`messages`,
at least one assistant message to learn, `weight` 0 or 1 on assistant messages, `tools` allowed), the older
completion format (`prompt`, `completion`), and the preference format of DPO jobs (`input`, `preferred_output`,
`non_preferred_output`). A problem names its line: "line 3: message 2 has no `role`".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["chat", "completion", "preference"]
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_PROBLEMS = 5  # named in the error; the first is the one to fix first


class InvalidFile(ValueError):
    """A file a job cannot train on; `message` names the lines and the problems."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class FileCheck:
    """What a valid file holds."""

    format: Format
    examples: int


def check_file(chunks: Iterable[bytes], method: Literal["supervised", "dpo"], min_examples: int) -> FileCheck:
    """Check every line of a JSONL file (given as chunks of bytes) for a job of `method`."""
    problems: list[tuple[int, str]] = []
    formats: dict[Format, int] = {}  # format -> the first line in it
    examples = 0
    for number, raw in enumerate(lines_of(chunks), start=1):
        if not raw.strip():
            continue
        try:
            found = _check_line(raw, method)
        except _LineProblem as problem:
            problems.append((number, problem.message))
        else:
            formats.setdefault(found, number)
            if len(formats) > 1:
                first, first_line = next(iter(formats.items()))
                problems.append((number, f"it is in the {found} format, but line {first_line} is in the {first} "
                                         "format; one file holds one format"))  # fmt: skip
                formats.pop(found)
            examples += 1
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        named = "; ".join(f"line {line}: {message}" for line, message in problems)
        raise InvalidFile(f"Invalid file format. {named}.", line=problems[0][0])
    if examples < min_examples:
        raise InvalidFile(f"The file has {examples} examples; a job needs at least {min_examples}.")
    return FileCheck(next(iter(formats)), examples)


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of chunks, without their line ends."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line.rstrip(b"\r") for line in complete)
    if pending:
        yield pending.rstrip(b"\r")


class _LineProblem(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check_line(raw: bytes, method: str) -> Format:
    try:
        line = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _LineProblem("it is not UTF-8 text") from None
    except ValueError as error:
        raise _LineProblem(f"it is not valid JSON ({error.args[0].split(':')[0]})") from None
    if not isinstance(line, dict):
        raise _LineProblem("it is not a JSON object")
    if "input" in line or "preferred_output" in line or "non_preferred_output" in line:
        if method != "dpo":
            raise _LineProblem("it is in the preference format (`input`, `preferred_output`, `non_preferred_output`), "
                               "which only a `dpo` job trains on; a supervised job needs `messages`")  # fmt: skip
        _check_preference(line)
        return "preference"
    if method == "dpo":
        raise _LineProblem("a `dpo` job needs the preference format: `input`, `preferred_output`, "
                           "`non_preferred_output`")  # fmt: skip
    if "messages" in line:
        _check_chat(line)
        return "chat"
    if "prompt" in line or "completion" in line:
        if not isinstance(line.get("prompt"), str) or not isinstance(line.get("completion"), str):
            raise _LineProblem("`prompt` and `completion` must both be strings")
        if not line["completion"].strip():
            raise _LineProblem("`completion` is empty: there is nothing to learn")
        return "completion"
    raise _LineProblem("it has no `messages` (the chat format)")


def _check_chat(line: dict[str, Any]) -> None:
    messages = line["messages"]
    if not isinstance(messages, list) or not messages:
        raise _LineProblem("`messages` must be a non-empty list")
    learned = 0
    for index, message in enumerate(messages, start=1):
        _check_message(message, index, weighted=True)
        if message["role"] == "assistant" and message.get("weight", 1) == 1:
            learned += 1
    if not any(message["role"] == "assistant" for message in messages):
        raise _LineProblem("it has no assistant message: there is nothing to learn")
    if not learned:
        raise _LineProblem("every assistant message has weight 0: there is nothing to learn")
    _check_tools(line)


def _check_preference(line: dict[str, Any]) -> None:
    prompt = line.get("input")
    if not isinstance(prompt, dict) or not isinstance(prompt.get("messages"), list) or not prompt["messages"]:
        raise _LineProblem("`input` must be an object with a non-empty list of `messages`")
    for index, message in enumerate(prompt["messages"], start=1):
        _check_message(message, index, weighted=False, where="input ")
    _check_tools(prompt, where="input.")
    for name in ("preferred_output", "non_preferred_output"):
        output = line.get(name)
        if not isinstance(output, list) or len(output) != 1:
            raise _LineProblem(f"`{name}` must be a list of one assistant message")
        _check_message(output[0], 1, weighted=False, where=f"{name} ")
        if output[0]["role"] != "assistant":
            raise _LineProblem(f"`{name}` must be an assistant message, not {output[0]['role']!r}")


def _check_message(message: Any, index: int, *, weighted: bool, where: str = "") -> None:
    name = f"{where}message {index}"
    if not isinstance(message, dict):
        raise _LineProblem(f"{name} is not a JSON object")
    role = message.get("role")
    if role is None:
        raise _LineProblem(f"{name} has no `role`")
    if role not in ROLES:
        raise _LineProblem(f"{name} has an unknown role {role!r} (one of {', '.join(ROLES)})")
    calls = message.get("tool_calls") or message.get("function_call")
    content = message.get("content")
    if content is None and not (role == "assistant" and calls):
        raise _LineProblem(f"{name} has no `content`")
    if isinstance(content, list):
        if any(not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str)
               for part in content):  # fmt: skip
            raise _LineProblem(f'{name}: only text content parts (`{{"type": "text", "text": ...}}`) are trained')
    elif content is not None and not isinstance(content, str):
        raise _LineProblem(f"{name} has a `content` that is neither a string nor a list of text parts")
    if "weight" in message:
        if not weighted or role != "assistant":
            raise _LineProblem(f"{name}: `weight` is only allowed on assistant messages of the chat format")
        if isinstance(message["weight"], bool) or message["weight"] not in (0, 1):
            raise _LineProblem(f"{name}: `weight` must be 0 or 1")
    if message.get("tool_calls") is not None:
        _check_tool_calls(message["tool_calls"], name)


def _check_tool_calls(calls: Any, name: str) -> None:
    if not isinstance(calls, list):
        raise _LineProblem(f"{name}: `tool_calls` must be a list")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _LineProblem(f"{name}: each tool call needs a `function` with a `name`")
        if not isinstance(function.get("arguments", ""), str):
            raise _LineProblem(f"{name}: a tool call's `arguments` must be a string (JSON text)")


def _check_tools(line: dict[str, Any], where: str = "") -> None:
    tools = line.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _LineProblem(f"`{where}tools` must be a list")
        for tool in tools:
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _LineProblem(f"each of `{where}tools` needs a `function` with a `name`")
    if "parallel_tool_calls" in line and not isinstance(line["parallel_tool_calls"], bool):
        raise _LineProblem(f"`{where}parallel_tool_calls` must be true or false")
