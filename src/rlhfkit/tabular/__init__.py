"""Tabular reinforcement learning: the small, exactly solvable MDPs behind RLHF's big ones.

What this room is for: building intuition (and tests) with problems whose answers are known.
A finite MDP (mdp.py) is planned with value or policy iteration (planning.py), learned with
tabular Q-learning or REINFORCE (learning.py), and rolled out by Monte-Carlo simulation
(simulate.py). Grid worlds come from text maps with slip noise (gridworld.py); two are built in
(worlds.py): Russell & Norvig's 4x3 world and a "Mars lander" whose policy changes with the
step reward. `rlhfkit gridworld` (cli.py) is the command line.

The math uses numpy only; this room must not import torch or any other rlhfkit room (the CLI
modules, cli.py and config.py, may import rlhfkit.config).
"""
