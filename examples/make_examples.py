"""Write the example data files of the README's command tour (run from the repository root:
`python examples/make_examples.py`). Every phrase below was written for rlhfkit; the files are
seeded combinations of them, so a re-run writes the same bytes.

A prompt opens a short movie review ("<film> <verb> <subject>. <opening>"); a response finishes
it in one of four tones, from glowing to bad. "Better" means more positive, as in the built-in
sentiment task. No row repeats, and each file has enough distinct prompts for a held-out split.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

FILMS = ["The sequel", "This documentary", "The remake", "The debut feature", "This animated film", "The period drama",
         "This low-budget thriller", "The musical", "This courtroom drama", "The road movie", "This science-fiction epic",
         "The romantic comedy", "This war film", "The coming-of-age story", "The biopic", "This heist movie"]
VERBS = ["follows", "centres on", "is about"]
SUBJECTS = ["a small-town detective", "two estranged sisters", "a retired boxer", "a young chef in Lisbon",
            "a crew stranded on Mars", "a jazz pianist on tour", "a teacher and her last class",
            "a family running a failing hotel", "a chess prodigy", "an ageing rock band", "a lighthouse keeper",
            "two rival magicians", "a nurse during a blackout", "a runaway teenager", "a forger in 1920s Paris",
            "a village preparing for a flood"]
OPENINGS = ["Overall, I thought it was", "In the end, the film is", "Honestly, I found it",
            "For me, the whole thing was", "My verdict:"]

# tone -> (heads, tails); a response is head + tail. Ratings: glowing 9-10, good 7-8, mixed 4-6, bad 1-3.
TONES = {
    "glowing": (
        ["a warm, funny and moving story", "beautifully shot and genuinely touching", "clever, heartfelt and great fun",
         "the best thing I have seen this year", "a small masterpiece", "thrilling from the first scene to the last",
         "a joy to watch", "gorgeous, tender and wonderfully acted", "sharp, stylish and surprisingly deep",
         "delightful from start to finish", "a confident, original piece of work", "bold, beautiful and full of heart",
         "an honest, generous and lovely film", "smart, tense and deeply rewarding", "funny, moving and beautifully made",
         "a triumph for everyone involved"],
        ["with a wonderful cast", "and the lead gives a career-best performance", "; I loved every minute",
         "and the score is lovely", "; I left the cinema smiling", "and the ending earns its tears",
         "with dialogue that feels real", "; I want to see it again soon", "and the pacing never drags",
         "with real care in every frame"],
    ),
    "good": (
        ["pretty good overall", "an enjoyable evening out", "better than I expected", "charming, if a little slight",
         "well made and easy to like", "a solid, likeable film", "good fun, despite a slow start",
         "nicely acted and often funny", "a pleasant surprise", "quite moving in places",
         "worth seeing for the lead alone", "entertaining and well paced"],
        ["; the cast clearly had fun", "and the ending works", "with a couple of great scenes", "; I would recommend it",
         "and the music helps a lot", "though the middle sags a little", "with a lovely supporting cast",
         "and it never outstays its welcome"],
    ),
    "mixed": (
        ["fine, I suppose, though nothing special", "watchable but forgettable", "uneven, with a few good scenes",
         "pleasant enough but thin", "decent, if a little too long", "okay for a rainy afternoon",
         "interesting but oddly flat", "solid but never surprising", "a mixed bag", "well acted but poorly paced",
         "neither good nor bad", "half of a good film"],
        ["; the second half is better than the first", "and the lead deserves a better script",
         "with one great scene near the end", "; I won't remember much of it", "and it plays safe throughout",
         "though the photography is lovely", "but the jokes rarely land", "and the ending is rushed"],
    ),
    "bad": (
        ["boring and far too long", "dull, loud and completely forgettable", "tedious from the first scene",
         "a mess from start to finish", "clumsy and badly paced", "a waste of a good cast", "cheap-looking and lifeless",
         "predictable and strangely cold", "an exhausting, joyless slog", "confused and poorly edited",
         "flat, humourless and slow", "a disappointment in every way", "painfully long and pointless",
         "shallow and full of clichés", "a chore to sit through", "awkward and badly written"],
        ["; I regret watching it", "and the ending makes no sense", "with wooden acting throughout",
         "and the jokes all fall flat", "; I nearly walked out", "and the plot holes are huge",
         "with a script that feels unfinished", "and nobody seems to care", "; I kept checking my watch",
         "and the music drowns every scene"],
    ),
}
RATINGS = {"glowing": (9, 10), "good": (7, 8), "mixed": (4, 6), "bad": (1, 3)}


class Writer:
    def __init__(self, seed: int = 18):
        self.rng = random.Random(seed)
        self.prompts = [f"{f} {v} {s}. {o}" for f in FILMS for v in VERBS for s in SUBJECTS for o in OPENINGS]
        self.rng.shuffle(self.prompts)
        self.used: set[str] = set()

    def fresh_prompts(self, n: int) -> list[str]:
        """n prompts no earlier call returned (so no prompt is in two files)."""
        out = [p for p in self.prompts if p not in self.used][:n]
        self.used.update(out)
        return out

    def response(self, tone: str, avoid: set[str] = frozenset()) -> str:
        heads, tails = TONES[tone]
        while True:
            head, tail = self.rng.choice(heads), self.rng.choice(tails)
            text = head + (tail if tail.startswith(";") else ", " + tail) + "."
            if text not in avoid:
                return text


def _write(path: Path, rows: list[dict]) -> None:
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows), f"{path}: repeated rows"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(folder: Path = Path(__file__).parent) -> None:
    w = Writer()
    rng = w.rng
    _write(folder / "prompts.jsonl", [{"prompt": p} for p in w.fresh_prompts(48)])
    _write(folder / "demos.jsonl", [{"prompt": p, "completion": " " + w.response(rng.choice(["glowing", "good"]))}
                                    for p in w.fresh_prompts(64)])

    prefs = []
    for i, p in enumerate(w.fresh_prompts(160)):
        if i % 10 == 9:  # a tie: two responses of the same tone, label 0.5
            tone = rng.choice(["glowing", "bad"])
            a = w.response(tone)
            prefs.append({"prompt": p, "chosen": a, "rejected": w.response(tone, {a}), "label": 0.5})
        elif i % 10 == 8:  # a soft label: a good response over a mixed one, preferred 4 times in 5
            prefs.append({"prompt": p, "chosen": w.response("good"), "rejected": w.response("mixed"), "label": 0.8})
        elif i % 10 == 7:  # a clear preference with a margin
            prefs.append({"prompt": p, "chosen": w.response("glowing"), "rejected": w.response("bad"), "margin": 1.0})
        else:
            high, low = rng.choice([("glowing", "bad"), ("glowing", "mixed"), ("good", "bad")])
            prefs.append({"prompt": p, "chosen": w.response(high), "rejected": w.response(low)})
    _write(folder / "prefs.jsonl", prefs)

    _write(folder / "rankings.jsonl", [{"prompt": p, "responses": [w.response(t) for t in TONES]}
                                       for p in w.fresh_prompts(48)])
    ratings = []
    for p in w.fresh_prompts(40):
        for tone in rng.sample(list(TONES), 3):
            ratings.append({"prompt": p, "response": w.response(tone), "rating": rng.randint(*RATINGS[tone])})
    _write(folder / "ratings.jsonl", ratings)
    thumbs = []
    for p in w.fresh_prompts(48):
        thumbs.append({"prompt": p, "response": w.response(rng.choice(["glowing", "good"])), "thumbs_up": True})
        thumbs.append({"prompt": p, "response": w.response(rng.choice(["mixed", "bad"])), "thumbs_up": False})
    _write(folder / "thumbs.jsonl", thumbs)
    _write(folder / "rewrites.jsonl", [{"prompt": p, "original": w.response(rng.choice(["mixed", "bad"])),
                                        "rewrite": w.response(rng.choice(["glowing", "good"]))}
                                       for p in w.fresh_prompts(64)])
    broken = [{"prompt": p, "chosen": w.response("glowing"), "rejected": w.response("bad")} for p in w.fresh_prompts(3)]
    del broken[1]["rejected"]  # row 2: the error `rlhfkit data validate` shows
    _write(folder / "broken_prefs.jsonl", broken)
    _write(folder / "steps.jsonl", stepwise_rows(random.Random(17), 96))


def stepwise_rows(rng: random.Random, n: int) -> list[dict]:
    """Process supervision (TRL's stepwise format): a sum of three numbers worked in steps, each
    labelled correct or not; a solution stops at its first wrong step, as PRM800K's do."""
    rows, seen = [], set()
    while len(rows) < n:
        a, b, c = (rng.randint(1, 20) for _ in range(3))
        if (a, b, c) in seen:
            continue
        seen.add((a, b, c))
        steps, labels, total = [], [], a
        for i, x in enumerate((b, c)):
            right = total + x
            wrong = rng.random() < 0.3
            shown = right + rng.choice([-2, -1, 1, 2]) if wrong else right
            steps.append(f"{total} + {x} = {shown}")
            labels.append(not wrong)
            total = right
            if wrong:
                break
        else:
            steps.append(f"The answer is {total}.")
            labels.append(True)
        rows.append({"prompt": f"What is {a} + {b} + {c}? Work it out step by step.", "completions": steps,
                     "labels": labels})
    return rows


if __name__ == "__main__":
    main()
