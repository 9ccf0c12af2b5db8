"""Deterministic demo datasets: questions about the sluice gates of a
fictional canal network, answered from a context passage.

The task is chosen to be learnable by the tiny model in a few CPU minutes:
every answer restates a fact that is present in the prompt's context, in a
fixed sentence shape, so a fine-tuned model beats the untrained base on
ROUGE-L for a real reason (it learned the shape and to copy the fact). Eval
questions are about gates that never appear in the training data.

``write_demo_data`` writes the same bytes every time (seeded, sorted keys).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

SEED = 20261121
SYSTEM_PROMPT = "Answer from the context."  # every training chat and every eval prompt starts with it
TRAIN_GATES = 120
EVAL_GATES = 30

_SYLLABLES_A = ["Elm", "Ash", "Brack", "Cold", "Dun", "Fen", "Gold", "Hazel", "Iron", "Kings", "Lark", "Mill",
                "North", "Oak", "Pike", "Quarry", "Reed", "Stone", "Thorn", "Willow", "Wych", "Yew"]
_SYLLABLES_B = ["ford", "bridge", "mere", "wick", "ham", "ton", "lock", "moor", "field", "well", "stead",
                "brook", "weir", "haven", "dale"]
_FIRST = ["Mara", "Tobin", "Ilse", "Corwin", "Petra", "Anselm", "Wren", "Dagny", "Osric", "Liesel", "Bram", "Nell"]
_LAST = ["Quill", "Harrow", "Fenwick", "Ashdown", "Marlowe", "Tarn", "Cobb", "Lindqvist", "Roe", "Hale"]


@dataclass(frozen=True)
class Gate:
    town: str
    opens: str
    closes: str
    keeper: str
    max_boat_m: int
    level_cm: int

    def facts(self) -> str:
        return (f"The sluice at {self.town} opens at {self.opens} and closes at {self.closes}. "
                f"Its keeper is {self.keeper}. Boats up to {self.max_boat_m} metres may pass, "
                f"and the water stands at {self.level_cm} centimetres.")


# (question, answer) templates; each answer restates one fact from the context
_QUESTIONS = [
    ("When does the sluice at {town} open?", "The sluice at {town} opens at {opens}."),
    ("When does the sluice at {town} close?", "The sluice at {town} closes at {closes}."),
    ("Who keeps the sluice at {town}?", "The keeper of the sluice at {town} is {keeper}."),
    ("How long may boats be at the {town} sluice?", "Boats up to {max_boat_m} metres may pass at {town}."),
    ("What is the water level at the {town} sluice?", "The water at {town} stands at {level_cm} centimetres."),
]
_WRONG_STYLE = [
    "I am not sure, you could ask someone at the canal office.",
    "Sluices open and close at various times.",
    "Please check the canal website.",
]


def _gates(rng: random.Random, count: int, taken: set[str]) -> list[Gate]:
    gates = []
    while len(gates) < count:
        town = rng.choice(_SYLLABLES_A) + rng.choice(_SYLLABLES_B)
        if town in taken:
            continue
        taken.add(town)
        opens_h = rng.randint(5, 9)
        closes_h = rng.randint(18, 22)
        gates.append(Gate(
            town=town,
            opens=f"{opens_h:02d}:{rng.choice(['00', '15', '30', '45'])}",
            closes=f"{closes_h:02d}:{rng.choice(['00', '15', '30', '45'])}",
            keeper=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            max_boat_m=rng.randint(12, 40),
            level_cm=rng.randint(80, 320),
        ))
    return gates


def _prompt(gate: Gate, question: str) -> str:
    return f"Context: {gate.facts()}\nQuestion: {question}"


def build_demo_data() -> dict[str, list[dict]]:
    """All demo datasets, by file name."""
    rng = random.Random(SEED)
    taken: set[str] = set()
    train_gates = _gates(rng, TRAIN_GATES, taken)
    eval_gates = _gates(rng, EVAL_GATES, taken)

    sft = []
    for gate in train_gates:
        for question, answer in _QUESTIONS:
            fields = vars(gate)
            prompt, response = _prompt(gate, question.format(**fields)), answer.format(**fields)
            if rng.random() < 0.2:  # some rows in the flat shape, normalised to messages at ingest
                sft.append({"system": SYSTEM_PROMPT, "prompt": prompt, "response": response, "source": "demo"})
            else:
                sft.append({"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                         {"role": "user", "content": prompt},
                                         {"role": "assistant", "content": response}],
                            "source": "demo"})
    rng.shuffle(sft)

    evaluation = []
    for gate in eval_gates:
        distractor = rng.choice(train_gates)
        for question, answer in rng.sample(_QUESTIONS, 2):
            fields = vars(gate)
            contexts = [gate.facts(), distractor.facts()]
            rng.shuffle(contexts)
            evaluation.append({"question": question.format(**fields), "contexts": contexts,
                               "reference": answer.format(**fields)})

    preference = []
    for gate in rng.sample(train_gates, 60):
        other = rng.choice(train_gates)
        for question, answer in rng.sample(_QUESTIONS, 3):
            fields = vars(gate)
            wrong = answer.format(**{**fields, **{k: v for k, v in vars(other).items() if k != "town"}})
            rejected = wrong if wrong != answer.format(**fields) and rng.random() < 0.7 else rng.choice(_WRONG_STYLE)
            preference.append({"prompt": _prompt(gate, question.format(**fields)),
                               "chosen": answer.format(**fields), "rejected": rejected})
    return {"sft.jsonl": sft, "eval.jsonl": evaluation, "preference.jsonl": preference}


def build_broken_sft() -> list[dict]:
    """A batch that breaks the sft contract in every way a real feed does,
    for the failure path: ~60% of its rows are invalid, far above the 5% the
    contract lets it quarantine. Every line is still valid JSON."""
    rng = random.Random(SEED + 1)
    gates = _gates(rng, 12, set())
    eval_question = build_demo_data()["eval.jsonl"][0]["question"]

    def chat(gate: Gate, turn: int) -> list[dict]:
        question, answer = _QUESTIONS[turn % len(_QUESTIONS)]
        return [{"role": "user", "content": _prompt(gate, question.format(**vars(gate)))},
                {"role": "assistant", "content": answer.format(**vars(gate))}]

    good = [{"messages": chat(gate, i), "source": "demo"} for i, gate in enumerate(gates[:8])]
    broken = [
        {"messages": list(reversed(chat(gates[8], 0))), "source": "demo"},  # assistant speaks first
        {"messages": [chat(gates[9], 1)[0], {"role": "assistant", "content": "   "}], "source": "demo"},  # empty
        {"prompt": _prompt(gates[10], "Who keeps this sluice?"), "source": "demo"},  # no response
        {"prompt": 42, "response": "forty-two", "source": "demo"},  # wrong type
        {"messages": "user: hi / assistant: hello", "source": "demo"},  # wrong type
        {"messages": chat(gates[11], 2), "source": "scraped-web"},  # source not allowed
        {"prompt": eval_question, "response": "I do not know.", "source": "demo"},  # eval question in training
        {"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"}],
         "source": "demo"},  # too short
        {"messages": [{"role": "user", "content": "x"}], "source": "demo"},  # no answer at all
        {"messages": chat(gates[0], 3) + chat(gates[1], 3)[:1], "source": "demo"},  # ends on a user turn
        {"messages": [{"role": "user", "content": _prompt(gates[2], "Mail the keeper?")},
                      {"role": "assistant", "content": f"Write to keeper.{gates[2].town.lower()}@canal.example "
                                                       "or call +44 20 7946 0958."}], "source": "demo"},  # PII
    ]
    rows = good + broken + [good[0], good[1]]  # and two exact duplicates
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def write_demo_data(demo_dir: Path) -> list[Path]:
    """The demo as the repository bundles it, all inside ``demo_dir``: the datasets in ``data/``, the broken
    sample in ``broken/sft.jsonl``."""
    written = [_write_jsonl(demo_dir / "data" / name, rows) for name, rows in build_demo_data().items()]
    written.append(_write_jsonl(demo_dir / "broken" / "sft.jsonl", build_broken_sft()))
    return written
