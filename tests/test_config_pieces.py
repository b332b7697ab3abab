"""Configs are built from shared pieces (rlhfkit.config): each field is declared once, its
docstring is the --help text of every command that has it, per-command wording and derived
defaults come from class-level mappings, and compare/quickstart derive their RLConfig from
ALGO_DEFAULTS plus their own fields."""

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
from typing import ClassVar

import pytest

from rlhfkit.cli import build_parser, main
from rlhfkit.config import (
    DefaultsBy,
    RunOptions,
    SeedOptions,
    build_config,
    config_from_args,
    derive_config,
    field_docs,
)
from rlhfkit.data.config import InstructConfig, ValidateConfig
from rlhfkit.feedback.config import (
    AnnotatorConfig,
    ExportConfig,
    ImportConfig,
    LabelConfig,
    ServeConfig,
    StatsConfig,
)
from rlhfkit.pipelines.bench_config import BenchConfig
from rlhfkit.pipelines.config import (
    CompareConfig,
    GenerationConfig,
    QuickstartConfig,
    RLRunConfig,
    RMConfig,
)
from rlhfkit.pipelines.eval_config import (  # noqa: E402
    EvalSampleConfig,
    LeaderboardConfig,
    MetricsConfig,
    WinrateConfig,
)
from rlhfkit.pipelines.overopt_config import OveroptConfig  # noqa: E402
from rlhfkit.tabular.config import SolveConfig, SweepConfig
from rlhfkit.trainers.config import ALGORITHMS, DPOConfig, GKDConfig, ILQLConfig, SFTConfig

from rlhfkit.generation.config import ServeConfig as ModelServeConfig  # noqa: E402
from rlhfkit.pipelines.loops_config import IterateConfig, ParetoConfig, RFTConfig  # noqa: E402

COMMANDS = {
    ("sft",): SFTConfig, ("dpo",): DPOConfig, ("ilql",): ILQLConfig, ("rm",): RMConfig, ("rl",): RLRunConfig,
    ("compare",): CompareConfig, ("quickstart",): QuickstartConfig, ("generate",): GenerationConfig,
    ("label",): LabelConfig, ("feedback", "serve"): ServeConfig, ("feedback", "import"): ImportConfig,
    ("feedback", "export"): ExportConfig, ("gridworld", "solve"): SolveConfig, ("gridworld", "sweep"): SweepConfig,
    ("eval", "sample"): EvalSampleConfig, ("eval", "winrate"): WinrateConfig, ("eval", "leaderboard"): LeaderboardConfig,
    ("eval", "metrics"): MetricsConfig, ("overopt", "run"): OveroptConfig, ("data", "validate"): ValidateConfig,
    ("feedback", "add-annotator"): AnnotatorConfig, ("feedback", "stats"): StatsConfig, ("bench",): BenchConfig,
    ("data", "instruct"): InstructConfig, ("rft",): RFTConfig, ("iterate",): IterateConfig, ("pareto",): ParetoConfig,
    ("serve",): ModelServeConfig, ("gkd",): GKDConfig,
}
# `feedback import FILE`, `data validate FILE`, `feedback add-annotator NAME`
POSITIONAL = {ImportConfig: {"file"}, ValidateConfig: {"file"}, AnnotatorConfig: {"name"}, InstructConfig: {"file"},
              ModelServeConfig: {"model"}}


def _help(args, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100000")  # one line per option: docstrings stay whole
    with pytest.raises(SystemExit) as exc:
        main([*args, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def _option_help(command: str, flag: str) -> str:
    return next(a.help for a in _subparser([command])._actions if flag in a.option_strings)


# --- every command's --help ----------------------------------------------------------------


def _subparser(args):
    parser = build_parser()
    for name in args:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


@pytest.mark.parametrize("args", sorted(COMMANDS), ids=" ".join)
def test_every_command_help_shows_every_field_doc(args, capsys, monkeypatch):
    cls = COMMANDS[args]
    out = " ".join(_help(args, capsys, monkeypatch).split())
    docs = field_docs(cls)
    actions = {a.dest: a for a in _subparser(args)._actions}
    for f in dataclasses.fields(cls):
        if f.name in POSITIONAL.get(cls, ()):
            continue
        assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
        assert "{" not in docs[f.name], docs[f.name]  # every help_terms placeholder filled
        flag = "--" + f.name.replace("_", "-")
        assert flag in actions[f.name].option_strings and actions[f.name].help.replace("%%", "%").startswith(docs[f.name] + " (default")
        assert f"{flag}" in out and docs[f.name] in out, flag


def test_the_table_of_commands_covers_every_config_command():
    titles = set()

    def walk(parser):
        titles.update(g.title.removesuffix(" options") for g in parser._action_groups
                      if g.title.endswith(" options") and g._group_actions)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    assert titles == {cls.__name__ for cls in COMMANDS.values()}


def test_rl_help_says_each_algorithms_default():
    # the values of REFERENCES.md (Stiennon et al. 2020 PPO: β 0.05, 4 epochs, whitened advantages;
    # GRPO: G = 4 here, β 0.04 with k3 in the loss, per-sequence token mean; RLOO: k = 4 samples),
    # DAPO (Yu et al. 2025): ε 0.2 / 0.28, no KL, token-level loss, dynamic sampling, overlong buffer a
    # fifth of the length; GSPO (Zheng et al. 2025): sequence ratio clipped to [1 − 3e-4, 1 + 4e-4], no
    # KL; Dr. GRPO: the constant aggregation. Written out by hand in ALGO_DEFAULTS' row order: ppo,
    # nlpo, reinforce, rloo, grpo, reinforce_pp, remax, dapo, gspo, dr_grpo, online_dpo
    expected = {
        "--init-kl-coef": "(default per --algo: 0.05 for ppo, nlpo, reinforce, rloo, reinforce_pp, remax; "
                          "0.04 for grpo, dr_grpo; 0 for dapo, gspo; 0.1 for online_dpo)",
        "--group-size": "(default per --algo: 1 for ppo, nlpo, reinforce, reinforce_pp, remax; 4 for rloo, grpo, dapo, gspo, dr_grpo; "
                        "2 for online_dpo)",
        "--ppo-epochs": "(default per --algo: 4 for ppo, nlpo; 1 for reinforce, rloo, grpo, reinforce_pp, remax, dapo, gspo, dr_grpo, "
                        "online_dpo)",
        "--kl-estimator": "(default per --algo: k1 for ppo, nlpo, reinforce, rloo, reinforce_pp, remax, online_dpo; "
                          "k3 for grpo, dapo, gspo, dr_grpo)",
        "--kl-in": "(default per --algo: reward for ppo, nlpo, reinforce, rloo, reinforce_pp, remax; loss for grpo, dapo, gspo, dr_grpo, "
                   "online_dpo)",
        "--whiten-advantages": "(default per --algo: True for ppo, nlpo; False for reinforce, rloo, grpo, reinforce_pp, remax, "
                               "dapo, gspo, dr_grpo, online_dpo)",
        "--loss-aggregation": "(default per --algo: token_mean for ppo, nlpo, reinforce, rloo, reinforce_pp, remax, dapo; "
                              "sequence_mean for grpo, gspo, online_dpo; constant for dr_grpo)",
        "--clip-high": "(default per --algo: None for ppo, nlpo, reinforce, rloo, grpo, reinforce_pp, remax, dr_grpo, online_dpo; "
                       "0.28 for dapo; 0.0004 for gspo)",
        "--importance-ratio": "(default per --algo: token for ppo, nlpo, reinforce, rloo, grpo, reinforce_pp, remax, dapo, "
                              "dr_grpo, online_dpo; sequence for gspo)",
        "--dynamic-sampling": "(default per --algo: False for ppo, nlpo, reinforce, rloo, grpo, reinforce_pp, remax, gspo, "
                              "dr_grpo, online_dpo; True for dapo)",
    }
    for flag, text in expected.items():
        help_text = _option_help("rl", flag)
        assert help_text.endswith(text), (flag, help_text)
        assert "(default: None)" not in help_text


def test_help_groups_and_derived_defaults(capsys, monkeypatch):
    out = _help(["rl"], capsys, monkeypatch)
    for heading in ("RLRunConfig options:", "rollout batch:", "KL control:", "optimiser:", "LoRA:", "run folder:", "device:"):
        assert f"\n{heading}\n" in out, heading
    kl_group = out.split("\nKL control:\n")[1].split("\n\n")[0]
    assert "--init-kl-coef" in kl_group and "--target-kl" in kl_group and "\n  --algo" not in kl_group
    assert "this run's folder name under output_dir (default: <algo>-<date>-<time>)" in out
    assert "(default: the whole mini-batch)" in _option_help("rl", "--micro-batch-size")
    # SFT and DPO: the learning rate's default depends on --lora (2e-4 / 2e-5 SFT; 5e-5 / 1e-6 DPO as in TRL)
    assert _option_help("sft", "--learning-rate").endswith("(default per --lora: 0.0002 for --lora; 2e-05 for --no-lora)")
    assert _option_help("dpo", "--learning-rate").endswith("(default per --lora: 5e-05 for --lora; 1e-06 for --no-lora)")
    # compare: mini-batch half the batch; its --ppo-epochs applies to the multi-epoch algorithms
    assert _option_help("compare", "--mini-batch-size").endswith("(default: half of --batch-size)")
    assert _option_help("compare", "--ppo-epochs").endswith("(default: 2 for ppo, nlpo; the others make their one pass)")


def test_a_default_override_keeps_the_pieces_docstring_and_shows_its_value():
    doc = "this run's folder name under output_dir"
    assert field_docs(RunOptions)["run_name"] == doc
    assert field_docs(QuickstartConfig)["run_name"] == doc and QuickstartConfig().run_name == "quickstart"
    assert _option_help("quickstart", "--run-name") == f"{doc} (default: 'quickstart')"
    assert _option_help("compare", "--run-name") == f"{doc} (default: 'compare')"
    # per-command wording through help_terms
    assert field_docs(SolveConfig)["seed"] == "random seed for learning and simulation"
    assert field_docs(RMConfig)["device"] == "device of the reward model: cpu, cuda, cuda:N, or auto"
    assert field_docs(LabelConfig)["precision"].startswith("compute precision of a local judge:")


def test_a_docstring_placeholder_without_a_term_is_an_error():
    @dataclasses.dataclass
    class Piece:
        size: int = 1
        """{unit} per step"""

    @dataclasses.dataclass
    class Command(Piece):
        help_terms: ClassVar[dict[str, str]] = {"unit": "pairs"}

    assert field_docs(Command)["size"] == "pairs per step"
    with pytest.raises(KeyError, match=r"Piece.size: its docstring names \{unit\}"):
        field_docs(Piece)


CONFIG_MODULES = ("rlhfkit.config", "rlhfkit.trainers.config", "rlhfkit.pipelines.config",
                  "rlhfkit.feedback.config", "rlhfkit.tabular.config")


def test_no_field_is_documented_twice():
    """The same (field, docstring) written in two classes is a copy that should be one piece."""
    import importlib

    seen: dict[tuple[str, str], list[str]] = {}
    for module_name in CONFIG_MODULES:
        module = importlib.import_module(module_name)
        for name, cls in vars(module).items():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module_name):
                continue
            body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
            for node, nxt in itertools.pairwise(body):
                if (isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                        and isinstance(nxt.value.value, str)):
                    seen.setdefault((node.target.id, " ".join(nxt.value.value.split())), []).append(name)
    copies = {key: classes for key, classes in seen.items() if len(classes) > 1}
    assert not copies, copies


# --- YAML through several pieces ----------------------------------------------------------


def test_yaml_with_options_from_several_pieces_builds_the_config(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text(
        "output_dir: out\nrun-name: demo\n"          # RunOptions
        "device: cpu\nprecision: fp32\n"              # ComputeOptions
        "lora_r: 4\nlora_dropout: 0.1\n"              # LoRAOptions
        "weight_decay: 0.01\nmax_grad_norm: 0.5\n"    # AdamWOptions
        "data: demos.jsonl\neval_fraction: 0.25\n"    # DataFileOptions
        "batch_size: 8\nmicro_batch_size: 2\n"        # EpochOptions / OfflineTrainOptions
        "seed: 3\nloss_on: all\n"                     # SeedOptions / SFTConfig itself
    )
    cfg = build_config(SFTConfig, path, {"lora_r": 8, "device": None})  # a flag over the file; None: not given
    assert (cfg.output_dir, cfg.run_name, cfg.overwrite) == ("out", "demo", False)
    assert (cfg.device, cfg.precision, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == ("cpu", "fp32", 8, 32, 0.1)
    assert (cfg.weight_decay, cfg.max_grad_norm, cfg.data, cfg.eval_fraction) == (0.01, 0.5, "demos.jsonl", 0.25)
    assert (cfg.batch_size, cfg.micro_batch_size, cfg.accumulation_steps, cfg.seed, cfg.loss_on) == (8, 2, 4, 3, "all")
    assert cfg.learning_rate == 2e-4  # unset: the LoRA default


def test_rl_yaml_takes_the_algorithms_defaults_for_what_it_leaves_unset(tmp_path):
    path = tmp_path / "rl.yaml"
    path.write_text("algo: grpo\nbatch_size: 16\nmini_batch_size: 8\ninit_kl_coef: 0.01\nlora: false\nrun_name: g\n")
    args = build_parser().parse_args(["rl", "--config", str(path), "--micro-batch-size", "4"])
    cfg = config_from_args(RLRunConfig, args)
    # GRPO's row (REFERENCES.md): G = 4, k3 in the loss, one pass, no whitening, per-sequence mean
    assert (cfg.group_size, cfg.kl_estimator, cfg.kl_in, cfg.ppo_epochs) == (4, "k3", "loss", 1)
    assert (cfg.whiten_advantages, cfg.loss_aggregation) == (False, "sequence_mean")
    assert (cfg.init_kl_coef, cfg.batch_size, cfg.mini_batch_size, cfg.micro_batch_size) == (0.01, 16, 8, 4)
    assert (cfg.lora, cfg.run_name, cfg.prompts_per_step) == (False, "g", 4)


# --- DefaultsBy and derive_config ---------------------------------------------------------


def test_defaults_by_fills_what_is_unset_and_describes_every_row():
    table = {"a": {"size": 1, "kind": "k1"}, "b": {"size": 2, "kind": "k1"}, "c": {"size": 1, "kind": "k3"}}
    by = DefaultsBy("algo", table)
    assert by.describe("size") == "(default per --algo: 1 for a, c; 2 for b)"
    assert by.describe("kind") == "(default per --algo: k1 for a, b; k3 for c)"
    assert DefaultsBy("lora", {True: {"lr": 2e-4}, False: {"lr": 2e-5}}).describe("lr") == \
        "(default per --lora: 0.0002 for --lora; 2e-05 for --no-lora)"

    @dataclasses.dataclass
    class Cfg:
        algo: str = "b"
        size: int | None = None
        kind: str | None = None

    cfg = Cfg(kind="k2")
    by.fill(cfg)
    assert (cfg.size, cfg.kind) == (2, "k2")  # a value given stays


def test_derive_config_copies_the_shared_fields_then_the_overrides():
    @dataclasses.dataclass
    class Target(SeedOptions):
        steps: int = 1
        width: int = 2

    @dataclasses.dataclass
    class Source(SeedOptions):
        width: int = 5
        name: str = "x"  # not a Target field: left out

    assert derive_config(Target, Source(seed=7)) == Target(seed=7, steps=1, width=5)
    assert derive_config(Target, Source(seed=7), steps=9, width=3) == Target(seed=7, steps=9, width=3)


# --- compare and quickstart build the RLConfig they built before ---------------------------

# Per algorithm, hand-written from ALGO_DEFAULTS' published values (REFERENCES.md): group size,
# KL estimator, where the KL goes, β, passes per batch, whitening, loss aggregation.
ALGO_ROWS = {
    "ppo": (1, "k1", "reward", 0.05, 4, True, "token_mean"),
    "nlpo": (1, "k1", "reward", 0.05, 4, True, "token_mean"),
    "reinforce": (1, "k1", "reward", 0.05, 1, False, "token_mean"),
    "rloo": (4, "k1", "reward", 0.05, 1, False, "token_mean"),
    "grpo": (4, "k3", "loss", 0.04, 1, False, "sequence_mean"),
    "reinforce_pp": (1, "k1", "reward", 0.05, 1, False, "token_mean"),
    "remax": (1, "k1", "reward", 0.05, 1, False, "token_mean"),
    "dapo": (4, "k3", "loss", 0.0, 1, False, "token_mean"),
    "gspo": (4, "k3", "loss", 0.0, 1, False, "sequence_mean"),
    "dr_grpo": (4, "k3", "loss", 0.04, 1, False, "constant"),
    "online_dpo": (2, "k1", "loss", 0.1, 1, False, "sequence_mean"),  # DPO β 0.1 (TRL's OnlineDPOConfig)
}
ROW_FIELDS = ("group_size", "kl_estimator", "kl_in", "init_kl_coef", "ppo_epochs", "whiten_advantages", "loss_aggregation")
# the GRPO variants' own fields: clip_low, clip_high, importance_ratio, dynamic_sampling, overlong_buffer_fraction
VARIANT_ROWS = {"dapo": (0.2, 0.28, "token", True, 0.2), "gspo": (3e-4, 4e-4, "sequence", False, 0.0)}
VARIANT_FIELDS = ("clip_low", "clip_high", "importance_ratio", "dynamic_sampling", "overlong_buffer_fraction")


def _expected(method: str, **values) -> dict:
    """RLConfig's own defaults for the fields compare/quickstart leave alone, then the row, then `values`."""
    untouched = {"clip_coef": 0.2, "vf_coef": 0.1, "cliprange_value": 0.2, "gamma": 1.0, "lam": 0.95,
                 "baseline": "moving_average", "baseline_decay": 0.9, "kl_anchor": "reference", "anchor_refresh": 10,
                 "target_kl": None, "kl_controller": "pi", "kl_kp": 2.0, "kl_ki": 0.3, "kl_lookahead": 2.0, "kl_horizon": 10000.0, "nlpo_top_p": 0.9, "nlpo_min_tokens": 100, "nlpo_refresh": 5,
                 "score_clip": None, "score_norm": "none", "missing_eos_penalty": None, "ptx_coef": 0.0, "ptx_data": "",
                 "ptx_batch_size": 4, "temperature": 1.0, "max_grad_norm": 1.0, "dynamic_sampling_rounds": 4,
                 "overlong_penalty": 1.0, "dpo_rounds": 0, "pairs_per_round": 32, "round_reference": "round"}
    variant = dict(zip(VARIANT_FIELDS, VARIANT_ROWS.get(method, (None, None, "token", False, 0.0))))
    return {**untouched, **dict(zip(ROW_FIELDS, ALGO_ROWS[method])), **variant, "algo": method, **values}


@pytest.mark.parametrize("method", ALGORITHMS)
def test_compare_builds_each_methods_rlconfig_as_before(method):
    # defaults: 384 samples / 32 per step = 12 steps; mini-batch 32 // 2 = 16 = micro-batch;
    # compare runs PPO/NLPO for 2 passes (not their published 4), the others their one;
    # max_new_tokens unset (None) until the pipeline gives it the task's own
    multi = method in ("ppo", "nlpo")
    expected = _expected(method, steps=12, batch_size=32, mini_batch_size=16, micro_batch_size=16,
                         learning_rate=3e-4, max_new_tokens=None, seed=0, **({"ppo_epochs": 2} if multi else {}))
    assert dataclasses.asdict(CompareConfig().rl_config(method)) == expected
    # other sizes: 640 / 64 = 10 steps, mini-batch 64 // 2 = 32; --ppo-epochs 3 reaches only PPO/NLPO
    cfg = CompareConfig(batch_size=64, sample_budget=640, learning_rate=1e-3, max_new_tokens=8, seed=3, ppo_epochs=3)
    expected = _expected(method, steps=10, batch_size=64, mini_batch_size=32, micro_batch_size=32,
                         learning_rate=1e-3, max_new_tokens=8, seed=3, **({"ppo_epochs": 3} if multi else {}))
    assert dataclasses.asdict(cfg.rl_config(method)) == expected


def test_quickstart_builds_its_ppo_and_reward_configs_as_before():
    expected = _expected("ppo", steps=25, batch_size=32, mini_batch_size=16, micro_batch_size=16, ppo_epochs=2,
                         learning_rate=3e-4, init_kl_coef=0.1, target_kl=6.0, kl_horizon=500.0, max_new_tokens=None, seed=0)
    assert dataclasses.asdict(QuickstartConfig().ppo_config()) == expected
    assert dataclasses.asdict(QuickstartConfig().reward_config()) == {
        "epochs": 2, "batch_size": 16, "learning_rate": 5e-5, "head_learning_rate": 1e-3, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "seed": 0}
    q = QuickstartConfig(ppo_steps=3, batch_size=16, mini_batch_size=8, micro_batch_size=4, seed=2, target_kl=None,
                         rm_batch_size=8, rm_epochs=1, rm_learning_rate=1e-4)
    expected = _expected("ppo", steps=3, batch_size=16, mini_batch_size=8, micro_batch_size=4, ppo_epochs=2,
                         learning_rate=3e-4, init_kl_coef=0.1, target_kl=None, kl_horizon=500.0, max_new_tokens=None, seed=2)
    assert dataclasses.asdict(q.ppo_config()) == expected
    assert dataclasses.asdict(q.reward_config()) == {
        "epochs": 1, "batch_size": 8, "learning_rate": 1e-4, "head_learning_rate": 1e-3, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "seed": 2}


def test_compare_checks_its_online_batches_when_built(capsys):
    # 30 responses cannot be split into GRPO's groups of 4: said before anything runs
    assert main(["compare", "--methods", "grpo", "--batch-size", "30", "--mini-batch-size", "10"]) == 2
    assert "batch_size (30) must be a multiple of group_size (4)" in capsys.readouterr().err


def test_rm_config_is_the_reward_training_config():
    from rlhfkit.trainers.config import RewardTrainConfig

    cfg = RMConfig(data="x.jsonl", epochs=3, learning_rate=1e-4)
    assert isinstance(cfg, RewardTrainConfig)
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.head_learning_rate, cfg.eval_fraction) == (3, 16, 1e-4, 1e-3, 0.1)
