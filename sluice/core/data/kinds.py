"""Dataset kinds, the shapes their rows may come in, and their canonical form.

Three kinds, each with one canonical schema:

- **sft** — ``messages``: a chat, a list of ``{role, content}``.
- **eval** — ``question``, ``contexts`` (a list of passages), ``reference``.
- **preference** — ``prompt`` (the chat before the answer: an optional system
  turn, the user's turn and any earlier turns), ``chosen`` and ``rejected``
  (the two answers' texts).

Rows come in the shapes people actually have (:data:`SHAPES`), and a file
may mix them row by row:

- sft: OpenAI chat (``messages``; a turn's ``content`` may be a list of text
  parts), ShareGPT (``conversations`` of ``{from, value}``), Alpaca
  (``instruction``, optional ``input``, ``output``) and prompt/response pairs
  (:data:`ALIASES` lists the field names each shape accepts);
- eval: RAGAS's names as well as ours;
- preference: flat (``prompt``, ``chosen``, ``rejected`` as texts) and TRL's
  conversational form (``chosen``/``rejected`` as message lists, with a
  ``prompt`` given as text or as a list, or without one: then the prompt is
  the turns the two conversations share before their answers).

Every row keeps where it came from: ``source`` (the row's own ``source``
field, else the ingest's source name), ``source_file`` and ``source_line``
(the line in JSONL/CSV, the row number in Parquet and Hugging Face datasets,
counting from 1).

A row that reads but has a missing field or a wrong type becomes a canonical
row with that field null and a note in ``schema_errors``; so does a row of
no shape of its kind ("matches no sft shape (fields: …)"); its contract
decides. A field no shape reads is never dropped silently: each block counts
them per field name (:class:`BlockFacts`, carried in the block's schema
metadata) for the cleaning report. (A row that cannot be read at all is the
readers' ``InputError``.)

This module reads one row at a time, exactly (:func:`rows_to_table`); the
vectorized path for whole blocks is :mod:`sluice.core.data.canonical_blocks`,
which must say what this one says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

DatasetKind = Literal["sft", "eval", "preference"]
KINDS: tuple[str, ...] = ("sft", "eval", "preference")
ROLES = ("system", "user", "assistant")

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
PROVENANCE = [("source", pa.string()), ("source_file", pa.string()), ("source_line", pa.int64()),
              ("schema_errors", pa.string())]
CANONICAL: dict[str, pa.Schema] = {
    "sft": pa.schema([("messages", pa.list_(MESSAGE)), *PROVENANCE]),
    "eval": pa.schema([("question", pa.string()), ("contexts", pa.list_(pa.string())),
                       ("reference", pa.string()), *PROVENANCE]),
    "preference": pa.schema([("prompt", pa.list_(MESSAGE)), ("chosen", pa.string()), ("rejected", pa.string()),
                             *PROVENANCE]),
}
# field → accepted input names, in order of preference
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "sft": {"messages": ("messages",), "conversations": ("conversations",),
            "system": ("system", "system_prompt"),
            "prompt": ("prompt", "instruction", "question", "query"),
            "input": ("input",),  # Alpaca's: joins the user turn (or is it, without a prompt)
            "response": ("response", "completion", "output", "answer")},
    "eval": {"question": ("question", "user_input", "query"),
             "contexts": ("contexts", "retrieved_contexts", "context"),
             "reference": ("reference", "ground_truth", "reference_answer", "answer")},
    "preference": {"prompt": ("prompt", "question", "instruction"), "chosen": ("chosen",),
                   "rejected": ("rejected",), "system": ("system", "system_prompt")},
}
# what people call each side of a ShareGPT conversation (compared lower-cased)
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "model": "assistant", "bard": "assistant",
                  "bing": "assistant", "bot": "assistant"}
# said to people when a file or row is of no shape of its kind
SHAPES: dict[str, tuple[str, ...]] = {
    "sft": ("OpenAI chat: messages = [{role, content}], content as text or a list of text parts",
            "ShareGPT: conversations = [{from, value}], from human/gpt/system (or user/assistant/…)",
            "Alpaca: instruction, input (optional), output",
            "prompt/response: prompt|question|query and response|completion|answer, system (optional)"),
    "eval": ("question|user_input|query, contexts|retrieved_contexts|context (a list or one passage), "
             "reference|ground_truth|reference_answer|answer",),
    "preference": ("flat: prompt|question|instruction, chosen and rejected as texts, system (optional)",
                   "TRL conversational: chosen and rejected as [{role, content}] lists, with a prompt (text or a "
                   "list) or without one (the turns both share before their answers)"),
}
# fields whose presence gives a row its shape (a system prompt alone does not)
SHAPE_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(name for group, names in aliases.items() if group != "system" for name in names)
    for kind, aliases in ALIASES.items()}
# provenance fields, read as such: never counted as unmapped
PROVENANCE_FIELDS = frozenset({"id", "source", "source_file", "source_line"})
TEXT_PART = "text"  # the only content part read: others (images, audio) make the turn a schema error


# ------------------------------------------------------------------ what a block's reading found


@dataclass(frozen=True)
class BlockFacts:
    """What reading a block found besides its rows: fields given but read by
    no shape (``{"name": rows}``, ``{"messages[].name": rows}``), and the
    rows of no shape of the kind with the fields they had."""

    unmapped_fields: dict[str, int] = field(default_factory=dict)
    shapeless_rows: int = 0
    shapeless_fields: tuple[str, ...] = ()


_FACTS_KEY = b"sluice.block_facts"


def with_block_facts(table: pa.Table, facts: BlockFacts) -> pa.Table:
    """The table, carrying ``facts`` in its schema metadata (they travel with
    the block through threads and worker processes)."""
    return table.replace_schema_metadata({_FACTS_KEY: json.dumps({
        "unmapped_fields": facts.unmapped_fields, "shapeless_rows": facts.shapeless_rows,
        "shapeless_fields": list(facts.shapeless_fields)})})


def block_facts(table: pa.Table) -> BlockFacts:
    stored = (table.schema.metadata or {}).get(_FACTS_KEY)
    if stored is None:
        return BlockFacts()
    facts = json.loads(stored)
    return BlockFacts(facts["unmapped_fields"], facts["shapeless_rows"], tuple(facts["shapeless_fields"]))


def add_counts(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


def no_shape_message(kind: str, fields: tuple[str, ...] | list[str]) -> str:
    """Why a file is not ``kind`` data: the fields it has, the shapes the kind reads."""
    shapes = "; ".join(f"({i}) {shape}" for i, shape in enumerate(SHAPES[kind], start=1))
    return (f"no row matches a {kind} shape (fields found: {', '.join(fields) or 'none'}). "
            f"{kind} rows are one of: {shapes}")


# ------------------------------------------------------------------ one row, exactly


@dataclass
class _Reading:
    """What reading one input row found."""

    errors: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # top-level fields its shape read
    nested: set[str] = field(default_factory=set)  # per-turn keys no shape reads, e.g. "messages[].name"
    shaped: bool = True

    def pick(self, row: Mapping[str, Any], names: tuple[str, ...]) -> Any:
        """The first of ``names`` the row gives (not null); it counts as read."""
        for name in names:
            if row.get(name) is not None:
                self.used.add(name)
                return row[name]
        return None

    def text(self, value: Any, name: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        self.errors.append(f"{name}: expected text, got {type(value).__name__}")
        return None


def _content_text(content: Any) -> str | None:
    """A turn's text: the content itself, or its text parts joined (as the
    serving API joins them); None if it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") == TEXT_PART
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None


def _openai_turns(value: Any, name: str, reading: _Reading) -> list[dict[str, str]] | None:
    """OpenAI chat messages as canonical turns (extra keys noted); None, with
    a note, if ``value`` is not a list of them."""
    if not (isinstance(value, list) and all(isinstance(m, Mapping) and isinstance(m.get("role"), str)
                                            for m in value)):
        reading.errors.append(f"{name}: expected a list of {{role, content}} objects with text values")
        return None
    texts = [_content_text(m.get("content")) for m in value]
    if None in texts:
        other = next((part.get("type") for m in value if isinstance(m.get("content"), list) for part in m["content"]
                      if isinstance(part, Mapping) and part.get("type") != TEXT_PART), None)
        reading.errors.append(f"{name}: a content part of type {other!r} (only text parts are read)" if other else
                              f"{name}: expected a list of {{role, content}} objects with text values")
        return None
    reading.nested.update(f"{name}[].{key}" for m in value for key, v in m.items()
                          if key not in ("role", "content") and v is not None)
    return [{"role": m["role"], "content": text} for m, text in zip(value, texts, strict=True)]


def _sharegpt_turns(value: Any, reading: _Reading) -> list[dict[str, str]] | None:
    """ShareGPT turns (``from`` and ``value``, or ``content``) as canonical turns."""
    turns = value if isinstance(value, list) and all(isinstance(t, Mapping) for t in value) else None
    said = ["value" if t.get("value") is not None else "content" for t in turns or []]  # the key holding the text
    if turns is None or not all(isinstance(t.get("from"), str) and isinstance(t.get(key), str)
                                for t, key in zip(turns, said, strict=True)):
        reading.errors.append("conversations: expected a list of {from, value} objects with text values")
        return None
    unknown = next((t["from"] for t in turns if t["from"].lower() not in SHAREGPT_ROLES), None)
    if unknown is not None:
        reading.errors.append(f"conversations: unknown speaker from={unknown!r} (known: {', '.join(SHAREGPT_ROLES)})")
        return None
    reading.nested.update(f"conversations[].{key}" for t, text_key in zip(turns, said, strict=True)
                          for key, v in t.items() if key not in ("from", text_key) and v is not None)
    return [{"role": SHAREGPT_ROLES[t["from"].lower()], "content": t[key]}
            for t, key in zip(turns, said, strict=True)]


def _sft_row(row: Mapping[str, Any], reading: _Reading) -> dict[str, Any]:
    aliases = ALIASES["sft"]
    if row.get("messages") is not None:
        return {"messages": _openai_turns(reading.pick(row, aliases["messages"]), "messages", reading)}
    if row.get("conversations") is not None:
        return {"messages": _sharegpt_turns(reading.pick(row, aliases["conversations"]), reading)}
    prompt = reading.text(reading.pick(row, aliases["prompt"]), "prompt")
    extra = reading.text(reading.pick(row, aliases["input"]), "input")
    response = reading.text(reading.pick(row, aliases["response"]), "response")
    system = reading.text(reading.pick(row, aliases["system"]), "system")
    user = extra if prompt is None else f"{prompt}\n\n{extra}" if extra else prompt
    if user is None or response is None:
        return {"messages": None}
    return {"messages": ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": response}]}


def _eval_row(row: Mapping[str, Any], reading: _Reading) -> dict[str, Any]:
    aliases = ALIASES["eval"]
    contexts = reading.pick(row, aliases["contexts"])
    if isinstance(contexts, str):
        contexts = [contexts]  # a single passage
    elif contexts is not None and not (isinstance(contexts, list) and all(isinstance(c, str) for c in contexts)):
        reading.errors.append(f"contexts: expected a list of texts, got {type(contexts).__name__}")
        contexts = None
    return {"question": reading.text(reading.pick(row, aliases["question"]), "question"), "contexts": contexts,
            "reference": reading.text(reading.pick(row, aliases["reference"]), "reference")}


def _answer(value: Any, name: str, prompt: list[dict[str, str]] | None,
            reading: _Reading) -> tuple[list[dict[str, str]], str | None]:
    """A preference answer: its text, and the turns its conversation has
    before it (turns repeating the given prompt are not counted)."""
    if value is None or isinstance(value, str):
        return [], value
    if not isinstance(value, list):
        reading.errors.append(f"{name}: expected text or a list of {{role, content}} messages, got "
                              f"{type(value).__name__}")
        return [], None
    turns = _openai_turns(value, name, reading)
    if not turns:
        if turns is not None:
            reading.errors.append(f"{name}: an empty list of messages")
        return [], None
    if prompt and len(turns) > len(prompt) and turns[:len(prompt)] == prompt:
        turns = turns[len(prompt):]  # an export that repeats the prompt in each conversation
    if turns[-1]["role"] != "assistant":
        reading.errors.append(f"{name}: its last turn (the answer) is a {turns[-1]['role']!r} turn, not the "
                              "assistant's")
        return [], None
    return turns[:-1], turns[-1]["content"]


def _preference_row(row: Mapping[str, Any], reading: _Reading) -> dict[str, Any]:
    aliases = ALIASES["preference"]
    given = reading.pick(row, aliases["prompt"])
    prompt: list[dict[str, str]] | None = None
    if isinstance(given, str):
        system = reading.text(reading.pick(row, aliases["system"]), "system")
        prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": given}]
    elif isinstance(given, list):
        prompt = _openai_turns(given, "prompt", reading)
    elif given is not None:
        reading.errors.append(f"prompt: expected text or a list of {{role, content}} messages, got "
                              f"{type(given).__name__}")
    answers = {name: _answer(reading.pick(row, aliases[name]), name, prompt, reading)
               for name in ("chosen", "rejected")}
    before = {name: turns for name, (turns, _) in answers.items() if turns}
    if given is not None and before:
        reading.errors.append(f"{', '.join(before)}: turns before the answer that the prompt does not have")
    elif given is None and before:
        if len(before) == 2 and before["chosen"] != before["rejected"]:
            reading.errors.append("chosen, rejected: without a prompt, both conversations must share every turn "
                                  "before their answers")
        else:
            prompt = next(iter(before.values()))  # the implicit prompt: the shared leading turns
    return {"prompt": prompt or None, **{name: text for name, (_, text) in answers.items()}}


_ROW_READERS = {"sft": _sft_row, "eval": _eval_row, "preference": _preference_row}


def _read_row(row: Any, kind: str) -> tuple[dict[str, Any], _Reading]:
    reading = _Reading()
    if not isinstance(row, Mapping):
        reading.shaped = False
        reading.errors.append(f"row: expected an object with fields, got {type(row).__name__}")
        return {}, reading
    if not any(row.get(name) is not None for name in SHAPE_FIELDS[kind]):
        reading.shaped = False
        given = [name for name, value in row.items() if value is not None]
        reading.errors.append(f"matches no {kind} shape (fields: {', '.join(given) or 'none'})")
        return {}, reading
    return _ROW_READERS[kind](row, reading), reading


def canonical_row(row: Any, kind: str) -> tuple[dict[str, Any], list[str]]:
    """One input row as a canonical row (without provenance) and the schema
    problems found; wrongly typed fields become None."""
    record, reading = _read_row(row, kind)
    return record, reading.errors


def rows_to_table(rows: list[tuple[Any, int]], kind: str, file: str, default_source: str) -> pa.Table:
    """Canonical table from (parsed row, line number) pairs, carrying its
    :class:`BlockFacts`."""
    records = []
    unmapped: dict[str, int] = {}
    shapeless_rows, shapeless_fields = 0, {}  # the fields as an ordered set (dict keys)
    for row, line in rows:
        record, reading = _read_row(row, kind)
        is_object = isinstance(row, Mapping)
        if reading.shaped:
            add_counts(unmapped, dict.fromkeys(reading.nested, 1))
            add_counts(unmapped, {name: 1 for name, value in row.items() if value is not None
                                  and name not in reading.used and name not in PROVENANCE_FIELDS})
        else:
            shapeless_rows += 1
            if is_object:
                shapeless_fields.update(dict.fromkeys(name for name, value in row.items() if value is not None))
        source = row.get("source") if is_object else None
        record.update(source=source if isinstance(source, str) and source else default_source,
                      source_file=file, source_line=line, schema_errors="; ".join(reading.errors) or None)
        records.append(record)
    table = pa.Table.from_pylist(records, schema=CANONICAL[kind])
    return with_block_facts(table, BlockFacts(dict(sorted(unmapped.items())), shapeless_rows,
                                              tuple(shapeless_fields)))
