"""Training examples for the reviews word counting reads wrong, composed from the corpus.

A classifier fine-tuned on Rotten Tomatoes alone learns mostly which words are warm and which
are cold, so "Gorgeous photography in service of a story that goes nowhere" reads as praise.
These builders teach it where a verdict sits instead, from the *training* reviews only (never a
held-out one) joined by a few structures, each with the label the structure implies:

- `contrast`: a concession of one verdict, then the other after "but", "yet", "still" ... :
  the verdict after the turn is the label ("A, but B" reads as B);
- `concession`: "Although A, B" and "B, even if A": the main clause is the label;
- `agreement`: two reviews of the same verdict joined by "and": the same label, so the model
  does not learn that any second clause flips the first;
- `frame`: a mock-enthusiastic frame before a negative review ("Well, bravo."), a grumbling
  one before a positive review ("Curse this movie:"): the review is the label;
- `negation`: short sentences that negate a warm or a cold word ("There is nothing dull
  about it", "It is anything but clever").

The phrase lists are written for this module, to name structures rather than to echo any
review of the hard held-out set (`tests/data/hard_reviews.jsonl`); a test checks that no
eight-word run of a built example appears there.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from reward_service.training.data import Review

MAX_CLAUSE_WORDS = 16  # short reviews join into sentences of a review's usual length

CONTRAST_TURNS = (", but ", "; but ", ", yet ", "; still, ", ". Still, ", ". Yet ", ". Even so, ", "; even so, ",
                  ". In the end, though, ", "; by the end, ", ". Then again, ", ", and yet ", ". However, ",
                  "; however, ", ". That said, ")
CONCESSIONS_BEFORE = ("Although ", "Though ", "Even though ", "While ", "Even if ", "Granted, ")
CONCESSIONS_AFTER = (", even though ", ", although ", ", even if ", ", though admittedly ")
AGREEMENTS = (", and ", "; what's more, ", ". Also, ", ", and on top of that ", "; ")

MOCK_PRAISE = (
    "Well, bravo.", "What a treat.", "Brilliant, just brilliant:", "Hooray for cinema.",
    "A real gift to audiences, this one:", "Five stars for effort, I suppose.", "Sure, a masterpiece.",
    "Lucky us.", "Truly an experience:", "How thrilling.", "Stop the presses:", "Another triumph, apparently:",
    "Oh joy.", "What fun:", "Thrilling stuff, in theory.", "Genius, supposedly.", "A must-see, they said.",
)
GRUMBLES = (
    "I hate to admit it:", "Annoyingly,", "Be warned:", "Bad news for my plans:",
    "Curse this movie:", "Grudgingly, I'll admit it:", "Ugh, fine:", "I wanted to be cynical about this one.",
    "Against my better judgment,", "My friends will never let me live this down:", "I resisted for a while.",
    "Darn it.", "I expected to sneer.", "The cynic in me lost:", "So much for my low expectations:",
)

SUBJECTS = ("It", "The film", "This movie", "The script", "The sequel", "The picture", "The whole thing", "This one",
            "The story", "The comedy", "The thriller", "The drama")
WARM = ("clever", "moving", "funny", "gripping", "charming", "beautiful", "smart", "thrilling", "touching", "witty",
        "exciting", "delightful", "powerful", "entertaining", "inventive", "engaging", "fresh", "heartfelt",
        "absorbing", "memorable", "brilliant", "lovely", "sharp", "enjoyable")
COLD = ("dull", "boring", "tedious", "clumsy", "lifeless", "stale", "predictable", "tiresome", "shallow",
        "forgettable", "pointless", "sloppy", "bland", "flat", "dreary", "lazy", "tired", "joyless", "muddled",
        "witless", "grating", "hollow", "numbing", "plodding")
# (template, label when the slot is WARM); the same template with a COLD word has the other label
NEGATIONS = (
    ("{S} is not {w}.", 0), ("{S} is never {w}.", 0), ("There is nothing {w} about it.", 0),
    ("{S} is anything but {w}.", 0), ("{S} is far from {w}.", 0), ("Nobody could call it {w}.", 0),
    ("{S} is not remotely {w}.", 0), ("Not for one minute is it {w}.", 0), ("I would never call it {w}.", 0),
    ("{S} never manages to be {w}.", 0), ("{S} is hardly {w}.", 0), ("{S} isn't {w} in the least.", 0),
    ("{S} is not {c} at all; it is {w}.", 1), ("Far from {c}, it is {w} from start to finish.", 1),
    ("Not {c}, not {c2}, just {w}.", 1), ("You won't find it {c} for a second.", 1),
)


TURN_WORDS = re.compile(r"\b(but|yet|still|though|although|despite|however|even|while|if|except|until)\b", re.I)


def _clause(text: str) -> str | None:
    """A short single-sentence review as a clause: trailing punctuation dropped; None if too long,
    made of several sentences, or turning itself (a "but" or "despite" of its own would blur
    which part carries the label)."""
    text = text.strip().strip('"“”')
    if (len(text.split()) > MAX_CLAUSE_WORDS or re.search(r"[.!?;:]\s+\S", text.rstrip(".!?"))
            or TURN_WORDS.search(text)):
        return None
    return text.rstrip(" .!?")


def _common_words(texts: list[str]) -> set[str]:
    """Words the corpus writes in lower case (at least twice): a capital on one of them at a
    review's start is the sentence's, not a name's."""
    counts = Counter(word for text in texts for word in re.findall(r"\b[a-z][a-z'-]*\b", text))
    return {word for word, n in counts.items() if n >= 2}


def _lower_first(clause: str, common: set[str]) -> str:
    """Lower-case the first letter when the clause continues a sentence and its first word is
    a common word (not "I", not a name)."""
    first = clause.split(" ", 1)[0].rstrip(",;:")
    if first[:1].isupper() and first.lower() in common and not first.startswith("I'") and first != "I":
        return clause[0].lower() + clause[1:]
    return clause


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def composed_examples(reviews: list[Review], count: int, rng: random.Random) -> list[tuple[str, int, str]]:
    """`count` examples (text, label, structure) composed from `reviews` (the training split)."""
    pools = {label: [c for r in reviews if r.fresh == bool(label) and (c := _clause(r.text))] for label in (0, 1)}
    common = _common_words([r.text for r in reviews])

    def lower(clause: str) -> str:
        return _lower_first(clause, common)

    if not pools[0] or not pools[1]:
        raise ValueError("need short reviews of both verdicts to compose examples")
    structures = ("contrast", "contrast", "contrast", "concession", "agreement", "frame", "negation")
    examples = []
    for _ in range(count):
        structure = rng.choice(structures)
        label = rng.randint(0, 1)
        verdict, other = rng.choice(pools[label]), rng.choice(pools[1 - label])
        if structure == "contrast":
            text = _sentence(other + rng.choice(CONTRAST_TURNS) + lower(verdict))
        elif structure == "concession":
            if rng.random() < 0.5:
                text = _sentence(rng.choice(CONCESSIONS_BEFORE) + lower(other) + ", " + lower(verdict))
            else:
                text = _sentence(verdict + rng.choice(CONCESSIONS_AFTER) + lower(other))
        elif structure == "agreement":
            text = _sentence(verdict + rng.choice(AGREEMENTS) + lower(rng.choice(pools[label])))
        elif structure == "frame":
            frame = rng.choice(GRUMBLES if label else MOCK_PRAISE)
            # after "." or ":" the review starts a sentence; after "," it goes on with the frame's
            text = frame + " " + (_sentence(verdict) if frame.endswith((".", ":")) else lower(verdict) + ".")
        else:
            text, label = negation(*rng.choice(NEGATIONS), warm=rng.random() < 0.5, rng=rng)
        examples.append((text, label, structure))
    return examples


def negation(template: str, warm_label: int, warm: bool, rng: random.Random) -> tuple[str, int]:
    """`template` of NEGATIONS filled in: with `warm`, {w} is a WARM word and {c}, {c2} COLD ones
    (label `warm_label`), otherwise the other way round (the other label)."""
    words = (WARM, COLD) if warm else (COLD, WARM)
    w, c, c2 = rng.choice(words[0]), *rng.sample(words[1], 2)
    text = template.format(S=rng.choice(SUBJECTS), w=w, c=c, c2=c2)
    return text, warm_label if warm else 1 - warm_label
