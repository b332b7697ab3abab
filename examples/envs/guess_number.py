"""A user environment for `rlhfkit rl --env examples/envs/guess_number.py:GuessNumber`.

The user thinks of a number from 1 to 20 and answers each guess with "higher" or "lower".
Reward: 1 for the right number, less 0.1 for every wrong guess before it; 0 if the turn limit
comes first. An environment needs only `reset(row) -> messages` and `step(text) ->
(new messages, reward, done)`; `rows(split)` (optional) gives the task rows that `reset` gets,
`max_turns` and `max_tokens` (optional) the episode's limits.
"""

import random
import re


class GuessNumber:
    max_turns = 5
    max_tokens = 160

    def rows(self, split="train"):
        rng = random.Random(0 if split == "train" else 1)
        return [{"prompt": "I'm thinking of a number from 1 to 20. Guess it!", "secret": rng.randint(1, 20)}
                for _ in range(200 if split == "train" else 40)]

    def reset(self, row):
        self.secret, self.wrong = int(row["secret"]), 0
        return [{"role": "user", "content": row["prompt"]}]

    def step(self, text):
        numbers = re.findall(r"-?\d+", text)
        if not numbers:
            return [{"role": "user", "content": "Please guess a number."}], 0.0, False
        guess = int(numbers[-1])
        if guess == self.secret:
            return [], max(1.0 - 0.1 * self.wrong, 0.0), True
        self.wrong += 1
        return [{"role": "user", "content": "Higher." if guess < self.secret else "Lower."}], 0.0, False
