"""Multi-turn episodes: the policy takes turns with an environment (a simulated user or a tool).

The episode is one token sequence: the opening prompt (the chat template of the environment's
first messages, up to the assistant's turn), then each policy turn as sampled, then the
template's text for the environment's reply and the next assistant header, and so on. Policy
tokens are kept exactly as sampled (never re-tokenised); only the environment's turns are
tokenised, as the difference between the template rendered with and without them. The
`policy_mask` marks exactly the sampled tokens, so log-probs, KL and the loss cover the policy's
own tokens only. Environments are duck-typed: `reset(row) -> messages`, `step(text) -> (new
messages, reward, done)` (envs/base.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from rlhfkit.data.chat import pad_token_id, uses_chat_template
from rlhfkit.generation.sampling import SamplingParams, sample
from rlhfkit.models.loading import autocast_context, eos_token_ids
from rlhfkit.types import Rollout

_SENTINEL = "@@RLHFKIT-ASSISTANT-CONTENT@@"


def render(tokenizer, messages: Sequence[dict], generation_prompt: bool, chat: bool) -> str:
    """The conversation as text: the chat template, or without one "role: content" lines."""
    if chat:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return text + ("assistant:" if generation_prompt else "")


def environment_tail(tokenizer, history: Sequence[dict], new: Sequence[dict], chat: bool, policy_eos: str | None) -> str:
    """The text that follows the assistant's content when the environment replies with `new`:
    the template's end of the assistant turn, the new messages and the next assistant header.
    policy_eos: the EOS text the policy already emitted (then not repeated), or None."""
    full = render(tokenizer, [*history, {"role": "assistant", "content": _SENTINEL}, *new], True, chat)
    cut = full.rfind(_SENTINEL)
    if cut < 0:
        raise ValueError("the chat template changed the assistant's text; episodes need one that keeps it")
    tail = full[cut + len(_SENTINEL):]
    if policy_eos and tail.startswith(policy_eos):
        tail = tail[len(policy_eos):]
    return tail


class _Episode:
    """One episode's growing token lists and transcript."""

    def __init__(self, env, row: dict, tokenizer, chat: bool):
        self.env, self.row = env, row
        self.messages = list(env.reset(row))
        self.prompt_ids = tokenizer(render(tokenizer, self.messages, True, chat), add_special_tokens=False)["input_ids"]
        self.ids: list[int] = []
        self.policy: list[float] = []
        self.logprobs: list[float] = []
        self.scores: list[float] = []
        self.turns: list[dict] = [dict(m) for m in self.messages]
        self.total, self.done, self.ended = 0.0, False, ""

    def add(self, ids: list[int], logprobs: list[float], policy: bool) -> None:
        self.ids += ids
        self.logprobs += logprobs if policy else [0.0] * len(ids)
        self.policy += [1.0 if policy else 0.0] * len(ids)
        self.scores += [0.0] * len(ids)

    def transcript(self) -> dict:
        calls = [c for t in self.turns for c in t.get("tool_calls", [])]
        return {"turns": self.turns, "return": self.total, "tool_calls": len(calls),
                "tool_successes": sum("result" in c for c in calls), "ended": self.ended,
                "policy_turns": sum(t["role"] == "assistant" for t in self.turns)}


def _policy_turn(model, tokenizer, episodes: list[_Episode], params: SamplingParams, max_tokens: int,
                 eos_ids: list[int], generator) -> list[tuple[list[int], list[float]]]:
    """Sample one assistant turn for each episode, each within its remaining token budget."""
    device = next(model.parameters()).device
    pad = pad_token_id(tokenizer)
    contexts = [e.prompt_ids + e.ids for e in episodes]
    budgets = [min(params.max_new_tokens, max_tokens - len(e.ids)) for e in episodes]
    P = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), P), pad, dtype=torch.long)
    mask = torch.zeros(len(contexts), P, dtype=torch.long)
    for i, c in enumerate(contexts):
        ids[i, P - len(c):], mask[i, P - len(c):] = torch.tensor(c), 1
    out = sample(model, ids.to(device), mask.to(device), replace(params, max_new_tokens=max(budgets)), eos_ids, pad, generator)
    turns = []
    for i, budget in enumerate(budgets):
        keep = out["response_mask"][i] > 0
        turns.append((out["response_ids"][i][keep].tolist()[:budget], out["logprobs"][i][keep].tolist()[:budget]))
    return turns


def _environment_turn(episode: _Episode, tokenizer, text: str, last_id: int, eos_ids: list[int], chat: bool,
                      max_tokens: int, is_last_turn: bool) -> None:
    """Hand the policy's text to the environment; record its reward and append its reply."""
    result = episode.env.step(text)
    messages, reward, done = result
    info = getattr(result, "info", {}) or {}
    episode.scores[-1] += float(reward)
    episode.total += float(reward)
    episode.turns.append({"role": "assistant", "content": text, "reward": float(reward), **info})
    if done:
        episode.done, episode.ended = True, "done"
        return
    if is_last_turn:
        episode.done, episode.ended = True, "turn limit"
        return
    eos_text = tokenizer.decode([last_id]) if last_id in eos_ids else None
    tail = environment_tail(tokenizer, episode.messages, list(messages), chat, eos_text)
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    if len(episode.ids) + len(tail_ids) >= max_tokens:
        episode.done, episode.ended = True, "token budget"
        return
    episode.add(tail_ids, [], policy=False)
    episode.messages += [{"role": "assistant", "content": text}, *messages]
    episode.turns += [dict(m) for m in messages]


@torch.no_grad()
def run_episodes(model, tokenizer, envs: Sequence, rows: Sequence[dict], params: SamplingParams, max_turns: int,
                 max_tokens: int, chat: bool | None = None, generator: torch.Generator | None = None,
                 compute_dtype: torch.dtype = torch.float32) -> Rollout:
    """Play one episode per (fresh environment, row), all episodes batched turn by turn.

    max_turns: policy turns per episode; max_tokens: the episode's budget of tokens after the
    opening prompt (policy and environment turns together). Returns a `Rollout` whose response
    is the whole episode after the opening prompt: response_mask 1 on every real token,
    policy_mask 1 on sampled tokens only, logprobs of the sampled tokens, token_scores each
    turn's reward on its last policy token, finished = the environment ended the episode (not
    the turn limit or budget), episodes the transcripts; prompts are the rows' prompts and
    responses the last assistant turn's text."""
    chat = uses_chat_template(tokenizer, chat)
    eos_ids = eos_token_ids(model, tokenizer)
    episodes = [_Episode(env, row, tokenizer, chat) for env, row in zip(envs, rows)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for turn in range(max_turns):
        live = [e for e in episodes if not e.done and len(e.ids) < max_tokens]
        if not live:
            break
        with autocast_context(device, compute_dtype):
            sampled = _policy_turn(model, tokenizer, live, params, max_tokens, eos_ids, generator)
        for episode, (ids, logprobs) in zip(live, sampled):
            episode.add(ids, logprobs, policy=True)
            text = tokenizer.decode(ids, skip_special_tokens=True).strip()
            _environment_turn(episode, tokenizer, text, ids[-1], eos_ids, chat, max_tokens, turn == max_turns - 1)
    for e in episodes:
        if not e.done:
            e.done, e.ended = True, "token budget"
    model.train(was_training)
    return _as_rollout(episodes, tokenizer, device)


def _as_rollout(episodes: list[_Episode], tokenizer, device) -> Rollout:
    pad = pad_token_id(tokenizer)
    B, P, T = len(episodes), max(len(e.prompt_ids) for e in episodes), max(1, max(len(e.ids) for e in episodes))
    prompt_ids = torch.full((B, P), pad, dtype=torch.long)
    prompt_mask = torch.zeros(B, P, dtype=torch.long)
    response_ids = torch.full((B, T), pad, dtype=torch.long)
    response_mask, policy_mask, logprobs, scores = (torch.zeros(B, T) for _ in range(4))
    for i, e in enumerate(episodes):
        n = len(e.ids)
        prompt_ids[i, P - len(e.prompt_ids):] = torch.tensor(e.prompt_ids)
        prompt_mask[i, P - len(e.prompt_ids):] = 1
        response_ids[i, :n] = torch.tensor(e.ids, dtype=torch.long)
        response_mask[i, :n] = 1.0
        policy_mask[i, :n] = torch.tensor(e.policy)
        logprobs[i, :n] = torch.tensor(e.logprobs)
        scores[i, :n] = torch.tensor(e.scores)
    last_text = [next((t["content"] for t in reversed(e.turns) if t["role"] == "assistant"), "") for e in episodes]
    return Rollout(
        prompt_ids=prompt_ids.to(device), prompt_mask=prompt_mask.to(device), response_ids=response_ids.to(device),
        response_mask=response_mask.to(device), logprobs=logprobs.to(device),
        prompts=[e.row["prompt"] for e in episodes], responses=last_text,
        finished=torch.tensor([e.ended == "done" for e in episodes], device=device),
        policy_mask=policy_mask.to(device), token_scores=scores.to(device),
        episodes=[e.transcript() for e in episodes],
    )


def episode_stats(episodes: Sequence[dict]) -> dict[str, float]:
    """Means over a batch of transcripts: return, policy turns, tool calls and their success."""
    n = max(len(episodes), 1)
    return {
        "episode/return_mean": sum(e["return"] for e in episodes) / n,
        "episode/turns_mean": sum(e["policy_turns"] for e in episodes) / n,
        "episode/tool_calls_mean": sum(e["tool_calls"] for e in episodes) / n,
        "episode/tool_call_success_rate": sum(e["tool_successes"] > 0 for e in episodes) / n,
        "episode/cut_off_fraction": sum(e["ended"] != "done" for e in episodes) / n,
    }
