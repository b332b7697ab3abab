"""The concepts task (CommonGen-style, Lin et al. 2020; GRUE's CommonGen task): write one
sentence that uses every given concept word.

Concept words: the most frequent concrete nouns (people, animals, artifacts, food, places,
plants, body parts, objects) and action verbs (motion, contact, consumption, creation,
perception, body) of WordNet 3.0, ranked by their SemCor sense counts (`cntlist.rev`), read
from the installed WordNet (Debian's `wordnet-base`, which `make setup` installs; see
data/wordnet.py). WordNet 3.0 © Princeton University, under the WordNet 3.0 licence (a
BSD-style licence: use, copy and distribute with the copyright notice).
Each prompt names two nouns and one verb, drawn with a fixed seed.

Gold = coverage × fluency, both in [0, 1]:
- coverage: the share of concepts that appear, inflections counting (a word covers concept c
  when WordNet's morphology, nltk's `morphy`, maps it to c: "threw" covers "throw", "dogs"
  covers "dog");
- fluency, bounded and model-free: known × distinct × length, where known is the share of the
  words that are English (a WordNet lemma or a function word), distinct the share of words not
  repeated, and length min(1, n / (2k)) · min(1, 30 / n) for n words and k concepts (a
  sentence using k concepts needs some words between them; a run-on past 30 words is cut
  down). Perplexity under a model, the other fluency measure the design names, is in
  `rlhfkit eval metrics --reference-model`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from functools import lru_cache
from typing import Sequence

from rlhfkit.data.wordnet import WordNetMissing, load_wordnet, wordnet_folder
from rlhfkit.tasks.base import Task

NOUN_FILES = {5, 6, 8, 13, 15, 17, 18, 20}  # lexnames: animal artifact body food location object person plant
VERB_FILES = {29, 34, 35, 36, 38, 39}  # lexnames: body consumption contact creation motion perception
# frequent in SemCor but abstract, proper, violent or too vague to picture
EXCLUDED = set("""jew god america england anode gun rifle bullet kill destroy soldier lieutenant captain comrade fool
thing way part end state system cell source general spirit south section site district county region facility tissue
position product figure member area place center side front back top line block edge direction equipment device
seem have need note cause produce develop create appear observe imagine sound lie design use make get take put come
officer employee shelter world earth work fellow guy companion patient manager youth""".split())
N_NOUNS, N_VERBS, N_PROMPTS = 100, 50, 600
FUNCTION_WORDS = set("""a an the this that these those some any each every no all both his her its their our my your
he she it they we you i him them us me who whom which what is are was were be been being am do does did has had
have will would can could may might shall should must of in on at by for with from to into onto over under up down
out off about after before near through across along around between behind beside and or but so as than then
while when where because if not there here very too also just""".split())
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def concept_words(folder=None) -> tuple[list[str], list[str]]:
    """(nouns, verbs): the N_NOUNS / N_VERBS most frequent concrete lemmas of WordNet's SemCor counts."""
    path = (folder or wordnet_folder()) / "cntlist.rev"
    if not path.is_file():
        raise WordNetMissing(f"the concepts task needs WordNet's cntlist.rev (sense counts), not found in {path.parent}")
    counts = {1: Counter(), 2: Counter()}
    for line in path.read_text().splitlines():
        key, _, count = line.split()
        lemma, _, rest = key.partition("%")
        ss_type, lex_file = (int(x) for x in rest.split(":")[:2])
        wanted = NOUN_FILES if ss_type == 1 else VERB_FILES if ss_type == 2 else set()
        if lex_file in wanted and lemma.isalpha() and 3 <= len(lemma) <= 10 and lemma not in EXCLUDED:
            counts[ss_type][lemma] += int(count)
    nouns = [w for w, _ in counts[1].most_common(N_NOUNS)]
    verbs = [w for w, _ in counts[2].most_common(N_VERBS + N_NOUNS) if w not in nouns][:N_VERBS]
    return nouns, verbs


def concept_rows() -> list[dict]:
    nouns, verbs = concept_words()
    rng, rows, seen = random.Random(0), [], set()
    while len(rows) < N_PROMPTS:
        concepts = sorted(rng.sample(nouns, 2)) + [rng.choice(verbs)]
        key = " ".join(concepts)
        if key in seen:
            continue
        seen.add(key)
        rows.append({"id": key, "concepts": concepts,
                     "prompt": f"Write one sentence that uses all of these words: {', '.join(concepts)}."})
    return rows


@lru_cache(maxsize=4096)
def lemmas(word: str) -> frozenset[str]:
    """The word itself and every base form WordNet's morphology gives it, in any part of speech."""
    wordnet = load_wordnet()
    return frozenset({word}.union(*(wordnet._morphy(word, pos) for pos in "nvar")))


@lru_cache(maxsize=4096)
def is_english(word: str) -> bool:
    """A function word, or a word WordNet knows (in any inflection)."""
    return word in FUNCTION_WORDS or bool(load_wordnet().synsets(word))


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def coverage(text: str, concepts: Sequence[str]) -> float:
    found = set().union(*(lemmas(w) for w in words_of(text))) if text.strip() else set()
    return sum(c in found for c in concepts) / len(concepts)


def fluency(text: str, k: int) -> float:
    """known × distinct × length (see the module docstring), in [0, 1]."""
    ws = words_of(text)
    if not ws:
        return 0.0
    n = len(ws)
    known = sum(is_english(w) for w in ws) / n
    distinct = len(set(ws)) / n
    length = min(1.0, n / (2 * k)) * min(1.0, 30 / n)
    return known * distinct * length


def coverage_times_fluency(prompts: Sequence[str], completions: Sequence[str], concepts: Sequence, **columns) -> list[float]:
    """Gold of the concepts task: coverage × fluency of each completion, in [0, 1]."""
    return [coverage(c, cs) * fluency(c, len(cs)) for c, cs in zip(completions, concepts)]


CONCEPTS = Task(
    name="concepts",
    description="write one sentence using three given concept words; gold = concept coverage (inflections count) × fluency",
    make_rows=concept_rows,
    scorer=coverage_times_fluency,
    chat=True,
    max_new_tokens=32,
    reference_column=None,
    metrics=("diversity", "perplexity"),
    source="concept words from WordNet 3.0 (frequent concrete nouns and verbs by SemCor counts); "
    "© Princeton University, WordNet 3.0 licence",
    needs=("concepts",),
)
