"""KL control that holds its target in a short run: the PI controller's update worked by hand,
the choice of controller from the config, and a learning test on a tiny model."""

import math

import pytest

from rlhfkit.algorithms import AdaptiveKLController, FixedKLController, PIKLController, make_kl_controller
from rlhfkit.config import ConfigError
from rlhfkit.evaluation.tables import kl_control_line
from rlhfkit.models.lora import frozen_copy
from rlhfkit.trainers.config import RLConfig
from rlhfkit.trainers.online import OnlineTrainer, kl_control_summary
from tests.test_online import PROMPTS, good_fraction


def test_pi_update_by_hand():
    # β0 = 0.1, target 6, kp = 1, ki = 0.1:  e = clip(KL/6 − 1, ±1), I += e, β = 0.1·exp(kp·e + ki·I)
    ctl = PIKLController(0.1, target=6.0, kp=1.0, ki=0.1, lookahead=0.0)
    # KL 9: e = 0.5, I = 0.5, β = 0.1·exp(0.5 + 0.05) = 0.1·1.733253 = 0.1733253
    assert ctl.update(9.0) == pytest.approx(0.1733253, abs=1e-7)
    # KL 3: e = −0.5, I = 0.0, β = 0.1·exp(−0.5) = 0.0606531
    assert ctl.update(3.0) == pytest.approx(0.0606531, abs=1e-7)
    # KL 18: e = clip(2) = 1, I = 1, β = 0.1·exp(1 + 0.1) = 0.1·3.004166 = 0.3004166
    assert ctl.update(18.0) == pytest.approx(0.3004166, abs=1e-7)
    # KL 0: e = −1, I = 0, β = 0.1·exp(−1) = 0.0367879
    assert ctl.update(0.0) == pytest.approx(0.0367879, abs=1e-7)
    assert ctl.integral == pytest.approx(0.0)


def test_pi_integrates_only_once_the_kl_has_come_within_half_the_target():
    # a run starts at the reference (KL 0): those steps move β by the proportional term only
    ctl = PIKLController(0.1, target=6.0, kp=1.0, ki=0.1, lookahead=0.0)
    # KL 0, 2: e = −1, −2/3; below 0.5·6 = 3, no integral: β = 0.1·e^−1 = 0.0367879, 0.1·e^(−2/3) = 0.0513417
    assert ctl.update(0.0) == pytest.approx(0.0367879, abs=1e-7)
    assert ctl.update(2.0) == pytest.approx(0.0513417, abs=1e-7)
    assert ctl.integral == 0.0 and not ctl.integrating
    # KL 3 reaches half the target: e = −0.5, I = −0.5, β = 0.1·exp(−0.5 − 0.05) = 0.0576950
    assert ctl.update(3.0) == pytest.approx(0.0576950, abs=1e-7)
    # from then on it keeps integrating, also below half the target: e = −1, I = −1.5,
    # β = 0.1·exp(−1 − 0.15) = 0.0316637
    assert ctl.update(0.0) == pytest.approx(0.0316637, abs=1e-7) and ctl.integral == pytest.approx(-1.5)


def test_pi_looks_ahead_along_the_kl_trend_by_hand():
    # β0 = 0.1, target 6, kp = 1, ki = 0.1, lookahead 2, trend decay λ = 0.5:
    # s_t = 0.5·s_{t−1} + 0.5·(KL_t − KL_{t−1}); K = KL + 2·s; e = clip(K/6 − 1, ±1); β = 0.1·exp(e + 0.1·I)
    ctl = PIKLController(0.1, target=6.0, kp=1.0, ki=0.1)
    assert ctl.lookahead == 2.0 and ctl.trend_decay == 0.5
    # KL 2, first batch: s = 0, K = 2 < 3 (no integral), e = −2/3, β = 0.1·e^(−2/3) = 0.0513417
    assert ctl.update(2.0) == pytest.approx(0.0513417, abs=1e-7)
    # KL 4: s = 0.5·2 = 1, K = 6, e = 0 (integral starts: I = 0), β = 0.1
    assert ctl.update(4.0) == pytest.approx(0.1, abs=1e-7) and ctl.integrating
    # KL 5: s = 0.5·1 + 0.5·1 = 1, K = 7, e = 1/6, I = 1/6, β = 0.1·exp(1/6 + 1/60) = 0.1·1.2009 = 0.1201
    assert ctl.update(5.0) == pytest.approx(0.1 * math.exp(1 / 6 + 1 / 60), abs=1e-7)
    assert ctl.update(5.0) == pytest.approx(0.1 * math.exp(0.0 + 0.1 * (1 / 6)), abs=1e-7)  # s = 0.5, K = 6: e = 0
    # plain PI (lookahead 0) on the same batches sees KL 5 < 6 and lowers β instead
    plain = PIKLController(0.1, target=6.0, kp=1.0, ki=0.1, lookahead=0.0)
    assert [plain.update(k) < 0.1 for k in (2.0, 4.0, 5.0)] == [True, True, True]


def test_pi_holds_beta_at_the_target_and_bounds_the_integral():
    # on target the error is 0: β stays where it is
    ctl = PIKLController(0.05, target=2.0, lookahead=0.0)
    for _ in range(5):
        assert ctl.update(2.0) == pytest.approx(0.05)
    # anti-windup: kp = 0, ki = 1, max_ratio = e² so |I| ≤ ln(e²)/1 = 2
    ctl = PIKLController(1.0, target=1.0, kp=0.0, ki=1.0, max_ratio=math.e ** 2, lookahead=0.0)
    assert [round(ctl.update(5.0), 6) for _ in range(3)] == [round(math.e, 6), round(math.e ** 2, 6), round(math.e ** 2, 6)]
    # the first batch back below target starts bringing β down at once: I = 2 − 1 = 1, β = e
    assert ctl.update(0.0) == pytest.approx(math.e)


def test_the_config_chooses_the_controller():
    assert isinstance(make_kl_controller(0.1, None, 100.0, "pi"), FixedKLController)
    assert isinstance(make_kl_controller(0.1, 6.0, 100.0), PIKLController)  # PI is the default
    ziegler = make_kl_controller(0.1, 6.0, 100.0, "ziegler")
    assert isinstance(ziegler, AdaptiveKLController) and ziegler.horizon == 100.0
    cfg = RLConfig(target_kl=6.0)
    assert cfg.kl_controller == "pi" and (cfg.kl_kp, cfg.kl_ki, cfg.kl_lookahead) == (2.0, 0.3, 2.0)
    assert make_kl_controller(0.1, 6.0, 100.0, "pi", lookahead=1.5).lookahead == 1.5
    with pytest.raises(ConfigError, match="init-kl-coef > 0"):
        RLConfig(target_kl=6.0, init_kl_coef=0.0)
    RLConfig(target_kl=6.0, init_kl_coef=0.0, kl_controller="ziegler")  # Ziegler's β simply stays 0
    with pytest.raises(ConfigError, match="kl_kp, kl_ki and kl_lookahead"):
        RLConfig(kl_ki=-1.0)


def _run(tiny_llama, tiny_tok, target_kl, steps=40):
    cfg = RLConfig(algo="ppo", steps=steps, batch_size=16, mini_batch_size=8, micro_batch_size=8, ppo_epochs=2,
                   learning_rate=1e-2, max_new_tokens=8, init_kl_coef=0.05, target_kl=target_kl, seed=0)
    trainer = OnlineTrainer(tiny_llama, tiny_tok, good_fraction, cfg, reference=frozen_copy(tiny_llama), chat=False)
    history = trainer.train(PROMPTS, progress=False)
    return trainer, history


def test_pi_controller_ends_a_short_run_within_25_percent_of_its_target(tiny_llama, tiny_tok):
    """Learning test: 40 PPO steps on a tiny model whose reward pulls it far from the reference.
    With a fixed β = 0.05 the KL of the last 8 steps ends well above 3 nats; with the PI controller
    and --target-kl 3 it ends within ±25%."""
    import copy

    fixed_trainer, fixed = _run(copy.deepcopy(tiny_llama), tiny_tok, None)
    uncontrolled = kl_control_summary(fixed_trainer, fixed)
    assert uncontrolled["controller"] == "fixed" and uncontrolled["within_25pct"] is None
    assert uncontrolled["achieved"] > 3.0 * 1.25, uncontrolled  # the task alone overshoots the band

    trainer, history = _run(tiny_llama, tiny_tok, 3.0)
    block = kl_control_summary(trainer, history)
    assert block["controller"] == "pi" and block["target"] == 3.0 and block["achieved_train_steps"] == 8
    assert abs(block["achieved"] / 3.0 - 1) <= 0.25, [round(h["kl/k1_seq_mean"], 2) for h in history]
    assert block["within_25pct"] is True
    assert block["final_coef"] > block["initial_coef"]  # it had to raise β to hold the KL down
    # the block is the mean of the logged KL of the last fifth of the steps
    assert block["achieved_train"] == pytest.approx(sum(h["kl/k1_seq_mean"] for h in history[-8:]) / 8)


def test_kl_control_summary_prefers_the_held_out_kl_and_prints_one_line(tiny_llama, tiny_tok):
    trainer, history = _run(tiny_llama, tiny_tok, 2.0, steps=2)
    block = kl_control_summary(trainer, history, held_out_kl=2.4)
    # |2.4/2 − 1| = 0.2 ≤ 0.25; the training figure is the last step's KL (2 steps // 5 → 1)
    assert block["achieved"] == 2.4 and block["within_25pct"] is True and block["achieved_train_steps"] == 1
    assert block["lookahead"] == 2.0  # the PI controller's look-ahead (steps along the KL's trend)
    line = kl_control_line(block)
    assert line.startswith("KL control (pi): target 2.00 nats, achieved 2.40 (held-out") and "within ±25%" in line
    assert "OUTSIDE" in kl_control_line(kl_control_summary(trainer, history, held_out_kl=3.0))
