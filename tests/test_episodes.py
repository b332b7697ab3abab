"""Multi-turn episodes on tiny models: the episode's tokens and policy mask (hand-built
episodes), the loss and KL on the policy's own tokens only, `rl --env` for each algorithm, and a
GRPO learning test that raises the tool-call success rate on a calculator episode."""

import json

import pytest
import torch

from rlhfkit.envs.base import StepResult
from rlhfkit.envs.calculator import CalculatorEnv, run_calls
from rlhfkit.generation.episodes import run_episodes
from rlhfkit.generation.sampling import SamplingParams
from rlhfkit.models.forward import response_forward
from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online import OnlineTrainer
from rlhfkit.types import Rollout


class Scripted:
    """Two turns: the user asks, whatever the policy says the user replies "three" (reward
    −0.25), then the episode ends with reward 1."""

    def reset(self, row):
        self.turn = 0
        return [{"role": "user", "content": row["prompt"]}]

    def step(self, text):
        self.turn += 1
        if self.turn == 1:
            return [{"role": "user", "content": "three"}], -0.25, False
        return [], 1.0, True


def _episodes(model, tok, n=3, max_new_tokens=3, max_turns=2, max_tokens=40):
    return run_episodes(model, tok, [Scripted() for _ in range(n)], [{"prompt": "what is one plus two"}] * n,
                        SamplingParams(strategy="sample", max_new_tokens=max_new_tokens), max_turns, max_tokens,
                        chat=True, generator=torch.Generator().manual_seed(0))


def test_episode_sequence_and_policy_mask(tiny_llama, tiny_tok):
    """Tiny template: '<|role|> content ' per message, '<|assistant|>' to open a turn. The opening
    prompt is '<|user|> what is one plus two <|assistant|>'; between the policy's two turns comes
    exactly the user's reply ' <|user|> three <|assistant|>' (policy_mask 0 there); every other
    real token is the policy's, with the log-prob it was sampled with (0 on the user's tokens)."""
    ro = _episodes(tiny_llama, tiny_tok)
    ids = lambda text: tiny_tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    reply = ids("<|user|> three <|assistant|>")
    assert len(reply) == 3
    for i, episode in enumerate(ro.episodes):
        prompt = ro.prompt_ids[i][ro.prompt_mask[i] > 0].tolist()
        assert prompt == ids("<|user|> what is one plus two <|assistant|>")
        n = int(ro.response_mask[i].sum())
        response, policy = ro.response_ids[i, :n].tolist(), ro.policy_mask[i, :n].tolist()
        first = policy.index(0.0)  # the policy's first turn, then the user's reply, then its second turn
        assert response[first : first + 3] == reply and policy[first : first + 3] == [0.0] * 3
        assert policy[:first] == [1.0] * first and policy[first + 3 :] == [1.0] * (n - first - 3)
        assert 1 <= first <= 3 and 1 <= n - first - 3 <= 3
        assert (ro.logprobs[i, :n][ro.policy_mask[i, :n] == 0] == 0).all()
        assert (ro.logprobs[i, :n][ro.policy_mask[i, :n] == 1] < 0).all()
        # each turn's reward on its last policy token
        expected = torch.zeros(ro.response_ids.shape[1])
        expected[first - 1], expected[n - 1] = -0.25, 1.0
        assert torch.equal(ro.token_scores[i], expected)
        assert episode["return"] == 0.75 and episode["policy_turns"] == 2 and episode["ended"] == "done"
        assert [t["role"] for t in episode["turns"]] == ["user", "assistant", "user", "assistant"]


def test_one_forward_pass_over_the_episode_gives_the_sampled_logprobs(tiny_llama, tiny_tok):
    """The concatenated sequence is the context the policy saw turn by turn: teacher-forcing the
    whole episode in one pass reproduces each policy token's sampling log-prob."""
    ro = _episodes(tiny_llama, tiny_tok)
    with torch.no_grad():
        out = response_forward(tiny_llama, ro.prompt_ids, ro.prompt_mask, ro.response_ids, ro.response_mask)
    torch.testing.assert_close(out.logprobs * ro.policy_mask, ro.logprobs, atol=1e-5, rtol=1e-4)


def test_turn_limit_and_token_budget_end_episodes(tiny_llama, tiny_tok):
    one_turn = _episodes(tiny_llama, tiny_tok, max_turns=1)
    assert all(e["ended"] == "turn limit" and e["return"] == -0.25 for e in one_turn.episodes)
    assert (one_turn.policy_mask == one_turn.response_mask).all()  # no user turn after the last policy turn
    tight = _episodes(tiny_llama, tiny_tok, max_new_tokens=3, max_tokens=4)  # a turn + 3 reply tokens ≥ 4
    assert all(e["ended"] == "token budget" and e["policy_turns"] == 1 for e in tight.episodes)
    assert tight.response_mask.sum(1).max() <= 3


def _hand_built(tok) -> Rollout:
    """Two episodes: prompt, then policy p p, user u u, policy p; the second has one pad at the end."""
    w = lambda *words: [tok.convert_tokens_to_ids(x) for x in words]  # noqa: E731
    prompt = torch.tensor([w("what", "is"), w("what", "is")])
    response = torch.tensor([w("good", "fun", "yes", "no", "great"), w("bad", "dull", "yes", "no", "<pad>")])
    response_mask = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    policy_mask = torch.tensor([[1.0, 1, 0, 0, 1], [1, 1, 0, 0, 0]])
    scores = torch.tensor([[0.0, 0, 0, 0, 1], [0, 0.5, 0, 0, 0]])
    return Rollout(prompt_ids=prompt, prompt_mask=torch.ones_like(prompt), response_ids=response,
                   response_mask=response_mask, logprobs=torch.zeros(2, 5), prompts=["p", "p"], responses=["", ""],
                   finished=torch.tensor([True, True]), policy_mask=policy_mask, token_scores=scores,
                   episodes=[{"return": 1.0}, {"return": 0.5}])


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_kl_rewards_and_loss_cover_the_policy_tokens_only(tiny_llama, tiny_tok, algo):
    policy = tiny_llama
    policy.requires_grad_(True)
    reference = frozen_copy(policy)
    with torch.no_grad():  # move the policy off the reference so the KL is not 0
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = RLConfig(algo=algo, steps=1, batch_size=2, group_size=2 if algo == "grpo" else 1, mini_batch_size=2,
                   ppo_epochs=1, init_kl_coef=0.1, learning_rate=1e-3, max_new_tokens=4, seed=0)
    trainer = OnlineTrainer(policy, tiny_tok, None, cfg, reference=reference, chat=True, env=Scripted)
    ro = _hand_built(tiny_tok)
    raw = trainer._episode_scores(ro)
    assert raw.tolist() == [1.0, 0.5]
    scored = trainer._scored_rollout(ro, raw, raw, None, trainer._old_and_anchor(ro))
    user = ro.policy_mask == 0
    assert (scored.kl[user] == 0).all() and (scored.kl[ro.policy_mask > 0] != 0).all()
    assert (scored.token_rewards[user] == 0).all()
    if algo == "ppo":  # KL in the reward: per-turn scores on the policy tokens, −β·kl on each
        expected = -0.1 * scored.kl + ro.token_scores
        torch.testing.assert_close(scored.token_rewards, expected * ro.policy_mask)
    _, loss_mask = trainer._grad_forward(ro, torch.arange(2))
    assert torch.equal(loss_mask, ro.policy_mask)

    def grads(advantages):
        policy.zero_grad(set_to_none=True)
        trainer._micro_loss(scored, torch.arange(2), advantages, None if algo == "grpo" else advantages,
                            ro.policy_mask.sum(), 2)
        return [p.grad.clone() for p in policy.parameters() if p.grad is not None]

    advantages = torch.tensor([[1.0, 0.5, 0, 0, -1.0], [0.3, -0.2, 0, 0, 0]])
    noisy = advantages + 7.0 * user.float()  # anything on the user's tokens
    for a, b in zip(grads(advantages), grads(noisy)):
        torch.testing.assert_close(a, b)


def _rl(tiny_dir, tmp_path, *extra):
    from rlhfkit.cli import main

    out = tmp_path / "runs"
    code = main(["rl", "--policy", tiny_dir, "--batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "2",
                 "--max-new-tokens", "4", "--precision", "fp32", "--steps", "1", "--eval-prompts", "3",
                 "--output-dir", str(out), "--run-name", "r", *extra])
    assert code == 0
    return out / "r"


@pytest.mark.parametrize("algo", ["grpo", "rloo", "reinforce", "ppo"])
def test_rl_env_calculator_runs_for_each_algo(tiny_dir, tmp_path, algo):
    run = _rl(tiny_dir, tmp_path, "--env", "calculator", "--algo", algo)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env"] == "calculator" and summary["steps"] == 1
    for side in ("before", "after"):
        assert set(summary[side]["success"]) == {"mean", "ci_low", "ci_high"}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "episode/tool_call_success_rate" in metrics[-1]
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    turns = rows[0]["episode"]["turns"]
    assert [t["role"] for t in turns[:3]] == ["system", "user", "assistant"] and "reward" in turns[2]
    assert "base_episode" in rows[0]
    assert "<h2>Episodes</h2>" in (run / "report.html").read_text()


def test_rl_env_takes_a_user_class_from_a_file_and_the_dialogue(tiny_dir, tmp_path):
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "envs" / "guess_number.py"
    run = _rl(tiny_dir, tmp_path, "--env", f"{example}:GuessNumber", "--algo", "grpo", "--max-turns", "2")
    assert json.loads((run / "summary.json").read_text())["max_turns"] == 2
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert rows[0]["episode"]["policy_turns"] <= 2
    run = _rl(tiny_dir, tmp_path, "--env", "dialogue", "--algo", "reinforce", "--overwrite")
    assert json.loads((run / "summary.json").read_text())["env"] == "dialogue"


# -- learning: GRPO raises the tool-call success rate ---------------------------------------------


def _calc_tokenizer():
    """A word-level tokenizer of 14 tokens in which `calc(` is one token: 'calc( 1 + 2 )' is five."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rlhfkit.models.tiny import _CHAT_TEMPLATE

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.train_from_iterator(["calc( ) 1 2 + answer"], trainer=trainers.WordLevelTrainer(special_tokens=special))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")
    fast.chat_template = _CHAT_TEMPLATE
    return fast


class ToolUse(CalculatorEnv):
    """The calculator's tool loop with the reward on the tool call itself: 1 when the first turn's
    call evaluates (its result comes back as a tool message), then one more turn."""

    def step(self, text):
        if getattr(self, "called", False):
            return StepResult([], 0.0, True)
        calls = run_calls(text)
        if not calls:
            return StepResult([], 0.0, True)
        self.called = True
        content = "; ".join(str(c.get("result", "error")) for c in calls)
        return StepResult([{"role": "tool", "content": content}], float(any("result" in c for c in calls)), False,
                          {"tool_calls": calls})


@pytest.mark.slow  # about 40 s on a 2-core machine: 80 GRPO steps of 32 episodes
def test_grpo_raises_the_tool_call_success_rate():
    from rlhfkit.models.tiny import tiny_causal_lm

    tok = _calc_tokenizer()
    assert tok.tokenize("calc( 1 + 2 )") == ["calc(", "1", "+", "2", ")"]
    policy = tiny_causal_lm("llama", vocab_size=len(tok))
    policy.requires_grad_(True)
    reference = frozen_copy(policy)
    rows = [{"prompt": "answer", "answer": 3}]

    def success_rate():
        ro = run_episodes(policy, tok, [ToolUse() for _ in range(64)], rows * 64,
                          SamplingParams(strategy="sample", max_new_tokens=6), 2, 24, chat=True,
                          generator=torch.Generator().manual_seed(1))
        return sum(e["tool_successes"] > 0 for e in ro.episodes) / 64

    before = success_rate()
    cfg = RLConfig(algo="grpo", steps=80, batch_size=32, group_size=16, mini_batch_size=32, max_new_tokens=6,
                   learning_rate=5e-3, init_kl_coef=0.0, seed=0)
    OnlineTrainer(policy, tok, None, cfg, reference=reference, chat=True, env=ToolUse, episode=(2, 24)).train(rows, progress=False)
    after = success_rate()
    assert before < 0.1 and after > 0.5, (before, after)  # 1.0, 0.98, 0.67 with seeds 0, 1, 2
