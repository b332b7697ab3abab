"""Trainers: readable loops (generate → score → shape → advantages → loss → step → log →
checkpoint). Import the submodules directly (`rlhfkit.trainers.online`, `.reward`, `.sft`, `.dpo`, `.quickstart`, ...);
this package file stays import-light for the CLI."""
