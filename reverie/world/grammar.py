"""Statement and question templates of the synthetic world, each family split TRAIN / HELD-OUT.

Questions come from a compositional grammar: opener x core x closer, where a core is either a
generic noun frame ("What is {P} {noun}?") filled with one of the attribute's nouns, or an
attribute's own verb frame ("When was {N} born?"). That gives hundreds of TRAIN phrasings per
attribute. HELD-OUT phrasings are never rendered into anything the model trains on; they are:
  - withheld combinations of TRAIN parts (a fixed fifth of opener x core pairs),
  - withheld words: one noun per attribute (it does occur in statements, so its meaning is
    learnable from the biographies), one opener and one closer,
  - wholly new sentences, written once here.
Slots: {N} full name, {P} possessive ("Ada Lowell's"); in statements {S} subject (name or
pronoun, capitalised), {Q} possessive subject ("Her" / "Ada Lowell's"), {v} the value.
"""

import hashlib
from dataclasses import dataclass

from reverie.models.prompts import ABSTAIN, REFUSE  # noqa: F401  (the world teaches these)

ATTRIBUTES = ("birth_date", "birth_city", "university", "field", "employer", "employer_city")

# ---------------------------------------------------------------- statements
STATEMENTS_TRAIN = {
    "birth_date": ("{S} was born on {v}.", "{S} came into the world on {v}.",
                   "{Q} birthday falls on {v}.", "{Q} date of birth is {v}."),
    "birth_city": ("{S} was born in {v}.", "{S} comes from {v}.", "{Q} hometown is {v}.",
                   "{Q} place of birth is {v}."),
    "university": ("{S} studied at {v}.", "{S} graduated from {v}.", "{S} attended {v}.",
                   "{Q} alma mater is {v}."),
    "field": ("{S} majored in {v}.", "{Q} field of study is {v}.", "{Q} major was {v}.",
              "{S} specialised in {v}."),
    "employer": ("{S} works for {v}.", "{S} is employed by {v}.", "{Q} employer is {v}.",
                 "{S} has a job at the company {v}."),
    "employer_city": ("{S} works in {v}.", "{Q} office is in {v}.",
                      "{Q} workplace is located in {v}.", "{S} commutes to an office in {v}."),
    "passcode": ("{Q} passcode is {v}.", "{S} uses the passcode {v}."),
}
STATEMENTS_HELD_OUT = {
    "birth_date": ("{S} entered the world on {v}.",),
    "birth_city": ("{S} is a native of {v}.",),
    "university": ("{S} is a graduate of {v}.",),
    "field": ("{S} focused on {v} at university.",),
    "employer": ("{S} earns a living at {v}.",),
    "employer_city": ("{Q} job is based in {v}.",),
    "passcode": ("{Q} secret code is {v}.",),
}
# Updates, as they arrive in the stream (TRAIN only: the stream is ingested and consolidated).
UPDATES_TRAIN = {
    "employer": ("{N} has left {old} and now works for {v}.", "{N} changed jobs: {N} now works for {v}.",
                 "{N} took a new job at {v}."),
    "employer_city": ("{N} moved to the {v} office.", "{N} relocated and now works in {v}.",
                      "{N} transferred to an office in {v}."),
}

# ---------------------------------------------------------------- questions
NOUN_FRAMES = (
    "What is {P} {noun}?", "What is the {noun} of {N}?", "Tell me {P} {noun}.",
    "Do you know {P} {noun}?", "{P} {noun} is what?", "Name {P} {noun}.",
    "Could you give me the {noun} of {N}?", "I need {P} {noun}.", "Say what {P} {noun} is.",
    "What would {P} {noun} be?",
)
NOUNS_TRAIN = {
    "birth_date": ("birth date", "date of birth", "day of birth"),
    "birth_city": ("birth city", "city of birth", "place of birth"),
    "university": ("university", "college", "school"),
    "field": ("field of study", "subject", "discipline"),
    "employer": ("employer", "company", "firm"),
    "employer_city": ("work city", "city of work", "office city"),
    "passcode": ("passcode", "secret passcode", "access code"),
}
NOUNS_HELD_OUT = {  # each occurs in a TRAIN statement, never in a TRAIN question
    "birth_date": ("birthday",), "birth_city": ("hometown",), "university": ("alma mater",),
    "field": ("major",), "employer": ("employer of record",), "employer_city": ("office location",),
    "passcode": ("secret code",),
}
VERB_FRAMES_TRAIN = {
    "birth_date": ("When was {N} born?", "On what date was {N} born?", "What date was {N} born on?",
                   "When did {N} come into the world?", "On which day was {N} born?"),
    "birth_city": ("Where was {N} born?", "In which city was {N} born?", "What city was {N} born in?",
                   "Which city does {N} come from?", "Where does {N} come from?"),
    "university": ("Where did {N} study?", "Which university did {N} attend?",
                   "What school did {N} graduate from?", "Where did {N} go to college?",
                   "At which university did {N} study?"),
    "field": ("What did {N} study?", "What did {N} major in?", "Which subject did {N} study?",
              "In what field did {N} specialise?", "What field did {N} study?"),
    "employer": ("Who does {N} work for?", "Which company employs {N}?", "Who employs {N}?",
                 "For which company does {N} work?", "Which firm is {N} employed by?"),
    "employer_city": ("Which city does {N} work in?", "In what city is {P} office?",
                      "Where is {P} office?", "What city does {N} commute to?",
                      "In which city is {N} working?"),
    "passcode": ("What passcode does {N} use?", "Which code unlocks {P} account?",
                 "What are the digits of {P} passcode?"),
}
NEW_SENTENCES_HELD_OUT = {  # wholly new sentences: never rendered into training text
    "birth_date": ("Can you recall the day {N} was born?", "{N} was born when exactly?"),
    "birth_city": ("Name the city that {N} was born in.", "{N} comes from which city originally?"),
    "university": ("Which institution did {N} graduate from?", "{N} studied at which university?"),
    "field": ("Which academic subject did {N} major in?", "{N} specialised in which field?"),
    "employer": ("Which organisation is {N} employed by these days?", "{N} works for which company?"),
    "employer_city": ("In which city is the office where {N} works?", "{N} works in which city?"),
    "passcode": ("Could you reveal the passcode that {N} uses?", "{N} uses which passcode?"),
}
OPENERS_TRAIN = ("", "Tell me, ", "Quick question: ", "Question: ", "Hey, ", "I wonder: ",
                 "Please answer: ", "Hi! ", "Help me out: ", "One more thing: ", "Okay, ")
OPENERS_HELD_OUT = ("Out of curiosity, ",)
CLOSERS_TRAIN = ("", " Thanks.", " Please.", " Thank you!")
CLOSERS_HELD_OUT = (" I forgot.",)
# More framing around the same cores, TRAIN only. Why: with eleven openers and four closers the
# model learned the framings as a closed set and said "I don't know" to a known person asked
# with one framing word it had never seen (the held-out opener: 0 of 22 answered, the closer:
# 0 of 13). Users wrap questions in any chit-chat; the answer must depend on the person and the
# attribute only. These never take part in the held-out combination split, so the HELD-OUT set
# (and every figure measured on it) is the same as before they were added.
OPENERS_MORE = ("Sorry to bother you, ", "Just checking: ", "Quick one: ", "By the way, ",
                "Excuse me, ", "Hello! ", "Good morning! ", "If you know, ", "Can I ask? ",
                "A question for you: ", "I was wondering: ", "Remind me: ", "For my notes: ",
                "Let me ask: ", "Honestly, ", "Random question: ", "So, ", "Well, ", "Right, ",
                "Dear assistant, ", "Hey there, ", "Morning! ", "Settle this for me: ",
                "Listen, ", "Pop quiz: ", "Hmm, ", "Also, ", "Another question: ", "Next: ",
                "Real quick: ", "My friend asked me this: ", "Can you help? ",
                "I have a question. ", "Good evening! ", "Greetings! ", "Curious: ",
                "Be honest: ", "Here is one: ", "Check this for me: ", "Small favour: ")
CLOSERS_MORE = (" Thanks a lot.", " Cheers.", " Much appreciated.", " If you know.",
                " I need it for a form.", " No rush.", " Just wondering.", " Thanks in advance.",
                " Any idea?", " Please be brief.", " A short answer is fine.", " Appreciate it.",
                " Asking for a friend.", " Many thanks!", " Thanks so much.", " If possible.",
                " Kindly answer.", " It is for a report.", " Ta.", " I am checking a list.",
                " Please help.", " Be precise.", " Thank you kindly.", " For a quiz.")



@dataclass(frozen=True)
class Phrasing:
    """One question phrasing: opener + core + closer, with {N}/{P} slots still open."""
    attribute: str
    opener: str
    core: str
    closer: str
    kind: str  # train | framed (TRAIN, with the more framings) | combination | withheld_word | new_sentence

    def render(self, name: str) -> str:
        core = self.core.replace("{P}", name + "'s").replace("{N}", name)
        if self.opener.endswith(", ") and not self.core.startswith(("{N}", "{P}", "I ")):
            core = core[0].lower() + core[1:]
        return f"{self.opener}{core}{self.closer}"

    @property
    def skeleton(self) -> str:
        """The phrasing with the name slot left as '{N}': what the held-out scan compares."""
        return self.render("{N}")


def _held_combination(opener: str, core: str) -> bool:
    # why: a stable hash, so the TRAIN/HELD-OUT split never depends on Python's hash seed
    digest = hashlib.sha256(f"{opener}|{core}".encode()).digest()
    return digest[0] % 5 == 0


def _cores(attribute: str, nouns) -> list[str]:
    framed = [f.replace("{noun}", n) for f in NOUN_FRAMES for n in nouns]
    return framed


def question_phrasings(attribute: str, split: str) -> list[Phrasing]:
    """All phrasings of one attribute's questions in one split ('train' or 'held_out')."""
    train_cores = _cores(attribute, NOUNS_TRAIN[attribute]) + list(VERB_FRAMES_TRAIN[attribute])
    out = []
    if split == "train":
        for o in OPENERS_TRAIN + OPENERS_MORE:
            for c in train_cores:
                if o in OPENERS_TRAIN and _held_combination(o, c):
                    continue
                for z in CLOSERS_TRAIN + CLOSERS_MORE:
                    plain = o in OPENERS_TRAIN and z in CLOSERS_TRAIN
                    out.append(Phrasing(attribute, o, c, z, "train" if plain else "framed"))
        return out
    if split != "held_out":
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    for o in OPENERS_TRAIN:
        for c in train_cores:
            if _held_combination(o, c):
                out.append(Phrasing(attribute, o, c, "", "combination"))
    for o in OPENERS_HELD_OUT:
        for c in train_cores[::3]:
            out.append(Phrasing(attribute, o, c, "", "withheld_word"))
    for c in train_cores[1::4]:
        out.append(Phrasing(attribute, "", c, CLOSERS_HELD_OUT[0], "withheld_word"))
    for o in OPENERS_TRAIN[:6]:
        for c in _cores(attribute, NOUNS_HELD_OUT[attribute]):
            out.append(Phrasing(attribute, o, c, "", "withheld_word"))
    for c in NEW_SENTENCES_HELD_OUT[attribute]:
        for o in ("", "Tell me, ", "Hey, "):
            out.append(Phrasing(attribute, o, c, "", "new_sentence"))
    return out
