"""What stages share, as plain functions: TRL configs built from the parameter blocks (args), training a TRL
trainer with resume and an atomic save (fit), SFT on prompt/completion rows (sft), sampling + filtering traces
(sampling), the parts of GRPO we own around TRL's trainer (grpo: rollout_func, rewards, reference loader) and its
trainer class (grpo_trainer, with DAPO re-sampling in dynamic_sampling, router replay / TIS / mismatch in
rollout_correction, the MTP head's refresh in mtp_refresh; seeding: stable seeds). Stages compose these; no stage imports
another stage, and nothing here imports a stage: a `ctx` argument is the StageContext the pipeline made."""
