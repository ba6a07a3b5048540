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
  about it", "It is anything but clever");
- `sarcasm`: praise that means the opposite, a phrase of ironic cheer before a plain fact that
  no one wants from a film ("Marvellous. I counted the ceiling tiles twice."; "Highly
  recommended, for anyone short of sleep."), and a mock complaint about what a film did too
  well ("Thanks a lot: now every other thriller looks lazy."), labelled by what it means;
- `understatement`: mild words for a strong verdict, praise held back ("Not too shabby.
  I'd happily sit through it again.") and faint praise that is a dismissal ("It is, strictly
  speaking, a movie."), some joined to a training review of the same verdict;
- `weighed`: merits and flaws of a film's parts, then a closing verdict that sets the label;
- `opening`: a first impression of one verdict ("It opens clumsy."), a turn, then a training
  review of the other.

The first five are the shipped recipe; `composed_examples(..., extended=True)` adds the last
four and MORE_NEGATIONS, an experiment the builtin model does not train on by default.

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
# more negations, used by the extended composition only (see `composed_examples`)
MORE_NEGATIONS = (
    ("There isn't a {w} {n} anywhere in it.", 0), ("Not a single {n} is {w}.", 0), ("Not once does it feel {w}.", 0),
    ("I can't think of one {w} {n} in the whole thing.", 0), ("Nothing about it is {w}.", 0),
    ("No one could accuse it of being {w}.", 0), ("It never once feels {w}.", 0),
    ("You won't find a more {w} {genre} this year.", 1), ("Never {c}, always {w}.", 1),
    ("Not one {n} in it is {c}.", 1),
)
NOUNS = ("scene", "performance", "line", "moment", "joke", "shot", "minute", "character", "song", "twist")


# sarcasm: (ironic cheer, plain fact) -> 0; (mock complaint, what the film did too well) -> 1
IRONIC_CHEER = (
    "Marvellous.", "Oh, wonderful.", "Splendid work, everyone.", "Just what the world needed:", "Fantastic.",
    "What an achievement:", "Colour me dazzled.", "Well, that was a treat.", "Bravo to all concerned:",
    "Oh, terrific.", "A triumph, clearly:", "Magnificent.", "Gosh, how original:", "Lovely stuff.",
    "Congratulations to the studio:", "Wow. Just wow.",
)
DREARY_FACTS = (
    "I counted the ceiling tiles twice.", "the end credits were the most exciting part.",
    "{minutes} minutes that felt like {m} hours.", "another {genre} where {cliche}.",
    "I checked my watch {k} times before the first act ended.", "the trailer already showed every good moment.",
    "my popcorn had more personality than the lead.", "the cast looks as keen to leave as the audience.",
    "the twist arrives an hour after everyone has guessed it.", "I now know the exit sign by heart.",
    "I have had livelier afternoons at the dentist.", "it finally cured my insomnia.",
    "the plot holes have plot holes of their own.", "the dialogue sounds like it was written on a napkin.",
    "a {genre} with all the urgency of a tax form.", "{minutes} minutes of my life I will not see again.",
    "the only surprise is how long it goes on.", "even the explosions seem to be yawning.",
)
RECOMMENDS = (
    "Highly recommended, for anyone short of sleep.", "Five stars, for the air conditioning.",
    "Two thumbs up, for the comfortable seats.", "A must-see, if you enjoy watching paint dry.",
    "If waiting rooms are your idea of fun, you will adore it.", "Perfect viewing for a long nap.",
    "Ideal for fans of staring at walls.", "Bring a pillow; you will thank me.",
    "Worth every penny, if someone else is paying and you can leave early.",
    "A gift to anyone who finds airport delays too thrilling.",
)
MOCK_COMPLAINTS = (
    "Thanks a lot:", "I am furious:", "Terrible news for my sleep schedule:", "Warning:",
    "I have a bone to pick with this film:", "Unforgivable, really:", "This is a problem:",
    "Who gave it permission?", "Rude, frankly:", "I demand compensation:", "A disaster for my plans:",
)
TOO_GOOD = (
    "now every other {genre} looks lazy.", "I missed my train because I stayed for the credits.",
    "my friends are sick of hearing about it.", "I have to watch everything this director has made.",
    "I will be humming the score for weeks.", "I cried in public, twice.",
    "I laughed so hard the people behind me complained.", "I could not stop thinking about it all week.",
    "it ruined every other {genre} for me.", "I have already booked tickets to see it again.",
    "I forgot to eat my popcorn.", "my weekend is gone, because I watched it three times.",
)
# weighed: merits and flaws of some aspects, then a closing verdict that sets the label
ASPECTS = ("the score", "the cast", "the humour", "the pacing", "the script", "the photography", "the ending",
           "the middle act", "the dialogue", "the soundtrack", "the lead", "the editing", "the villain", "the set design")
VERDICTS = {
    1: ("Recommended.", "Verdict: go.", "On balance, a winner.", "Still, go and see it.", "Overall, worth your evening.",
        "The good wins, comfortably.", "I'd see it again tomorrow.", "Net result: a pleasure.", "See it.",
        "Worth it in the end."),
    0: ("Skip it.", "Verdict: stay home.", "On balance, a miss.", "Not worth the ticket.", "Overall, a letdown.",
        "The bad wins, easily.", "Wait for something better.", "Net result: a chore.", "Give it a miss.",
        "Not worth it in the end."),
}
# opening: a first impression of one verdict, then the lasting one (a training review)
FIRST_IMPRESSIONS = ("{Adj}, I thought for the first ten minutes.", "It opens {adj}.", "The first scene is {adj}.",
                     "{Adj} and {adj2} is how the poster sells it.", "My first reaction: {adj}.",
                     "I expected it to be {adj}.", "For a while it seems {adj}.")
AFTERWARDS = ("Then: ", "After that? ", "It doesn't last. ", "Wrong. ", "What follows is another story. ",
              "By the end, the truth is plain. ", "So much for first impressions. ")
GENRES = ("comedy", "thriller", "sequel", "superhero film", "romance", "horror film", "heist movie", "drama",
          "war film", "musical", "biopic", "cartoon")
CLICHES = ("nobody answers the phone", "the villain explains his plan", "the hero is a chosen one",
           "the dog saves the day", "a wedding goes wrong", "the car chase lasts twenty minutes",
           "the robots want to be human", "everyone shouts in the rain")

# understatement: held-back praise (1) and faint praise (0), alone or before a training review of that verdict
RESTRAINED_PRAISE = (
    "Not too shabby.", "Not half bad, honestly.", "I have sat through far worse, and rarely anything better.",
    "Hardly a wasted evening.", "I wouldn't say no to a second viewing.", "Quietly, rather good.",
    "It could have been a lot worse; it's actually pretty good.", "It'll do. It'll do very nicely.",
    "Let's just say my phone stayed in my pocket.", "Somebody clearly did their homework here.",
    "I may have smiled once or twice. Or twenty times.", "Decent enough, and then some.",
    "No complaints from me, none at all.", "I didn't mind it. In fact, I liked it a lot.",
    "It does what it sets out to do, and does it well.", "A modest little film that gets everything right.",
    "{S} is not without its charms; it has plenty.", "I'd be lying if I said I didn't enjoy it.",
)
FAINT_PRAISE = (
    "{S} is, strictly speaking, a movie.", "It happened, and I was there.", "The seats were comfortable.",
    "It passes the time, barely.", "Well, it's something.", "I suppose somebody out there will like it.",
    "Not the worst thing I've seen this year, though it's close.", "Competent, I guess. Nothing more to report.",
    "{S} certainly ends, eventually.", "Mildly less interesting than its trailer.", "There were colours in it.",
    "It's long. That much I can say for it.", "The best thing about it was the parking.",
    "Adequate, in the way a waiting room is adequate.", "I have no strong feelings about it, or any feelings.",
    "{S} is there, and that's about it.", "Fine for a long flight, if the screen is small.",
    "It won't hurt anyone, I suppose.",
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


CLASSIC_STRUCTURES = ("contrast", "contrast", "contrast", "concession", "agreement", "frame", "negation")
EXTENDED_STRUCTURES = CLASSIC_STRUCTURES + ("negation", "sarcasm", "sarcasm", "understatement", "understatement",
                                            "weighed", "opening")


def composed_examples(reviews: list[Review], count: int, rng: random.Random,
                      extended: bool = False) -> list[tuple[str, int, str]]:
    """`count` examples (text, label, structure) composed from `reviews` (the training split).
    `extended` adds the sarcasm, understatement, weighed and opening structures and the
    MORE_NEGATIONS templates; without it the output is the shipped recipe's, example for example."""
    pools = {label: [c for r in reviews if r.fresh == bool(label) and (c := _clause(r.text))] for label in (0, 1)}
    common = _common_words([r.text for r in reviews])

    def lower(clause: str) -> str:
        return _lower_first(clause, common)

    if not pools[0] or not pools[1]:
        raise ValueError("need short reviews of both verdicts to compose examples")
    structures = EXTENDED_STRUCTURES if extended else CLASSIC_STRUCTURES
    negations = NEGATIONS + MORE_NEGATIONS if extended else NEGATIONS
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
        elif structure == "negation":
            text, label = negation(*rng.choice(negations), warm=rng.random() < 0.5, rng=rng)
        elif structure == "weighed":
            text = weighed(label, rng)
        elif structure == "opening":
            text = opening(label, rng) + " " + _sentence(verdict)
        elif structure == "sarcasm":
            text = sarcasm(label, rng)
        else:
            text = understatement(label, rng)
            if rng.random() < 0.4:
                text += " " + _sentence(verdict)
        examples.append((text, label, structure))
    return examples


def negation(template: str, warm_label: int, warm: bool, rng: random.Random) -> tuple[str, int]:
    """`template` of NEGATIONS filled in: with `warm`, {w} is a WARM word and {c}, {c2} COLD ones
    (label `warm_label`), otherwise the other way round (the other label)."""
    words = (WARM, COLD) if warm else (COLD, WARM)
    w, c, c2 = rng.choice(words[0]), *rng.sample(words[1], 2)
    slots = {"n": rng.choice(NOUNS)} if "{n}" in template else {}
    if "{genre}" in template:
        slots["genre"] = rng.choice(GENRES)
    text = template.format(S=rng.choice(SUBJECTS), w=w, c=c, c2=c2, **slots)
    return text, warm_label if warm else 1 - warm_label


def _fill(template: str, rng: random.Random) -> str:
    return template.format(S=rng.choice(SUBJECTS), genre=rng.choice(GENRES), cliche=rng.choice(CLICHES),
                           minutes=rng.choice((95, 110, 124, 138, 150)), m=rng.choice(("three", "four", "five")),
                           k=rng.choice(("four", "six", "eleven")))


def _join(opener: str, rest: str) -> str:
    """`rest` after `opener`: a new sentence after "." or "?", the same one after ":"."""
    return opener + " " + (rest[0].upper() + rest[1:] if opener.endswith((".", "?")) else rest)


def sarcasm(label: int, rng: random.Random) -> str:
    """A sarcastic line meaning `label`: ironic cheer about a dreary fact, a mock recommendation
    (0), or a mock complaint about what the film did too well (1)."""
    if label:
        return _join(rng.choice(MOCK_COMPLAINTS), _fill(rng.choice(TOO_GOOD), rng))
    if rng.random() < 0.3:
        return _fill(rng.choice(RECOMMENDS), rng)
    return _join(rng.choice(IRONIC_CHEER), _fill(rng.choice(DREARY_FACTS), rng))


def understatement(label: int, rng: random.Random) -> str:
    """Held-back praise (1) or faint praise that dismisses (0)."""
    return _fill(rng.choice(RESTRAINED_PRAISE if label else FAINT_PRAISE), rng)


def weighed(label: int, rng: random.Random) -> str:
    """Two aspects praised and one faulted, or the other way round, in either order, then a
    closing verdict of `label` (which side wins is the verdict's, not the count's)."""
    a, b, c = rng.sample(ASPECTS, 3)
    major, minor = (WARM, COLD) if rng.random() < 0.5 else (COLD, WARM)
    w1, w2 = rng.sample(major, 2)
    two, one = f"{a} is {w1} and {b} {w2}", f"{c} is {rng.choice(minor)}"
    if rng.random() < 0.3:
        pros, cons = (two, one) if major is WARM else (one, two)
        body = f"Pros: {pros}. Cons: {cons}."
    else:
        body = _sentence(two + "; " + one) if rng.random() < 0.5 else _sentence(one + "; " + two)
    return body + " " + rng.choice(VERDICTS[label])


def opening(label: int, rng: random.Random) -> str:
    """A first impression of the other verdict than `label`, and a turn to what follows."""
    first, second = rng.sample(COLD if label else WARM, 2)
    line = rng.choice(FIRST_IMPRESSIONS).format(Adj=first.capitalize(), adj=first, adj2=second)
    return line + " " + rng.choice(AFTERWARDS).rstrip()
