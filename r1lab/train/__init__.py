"""What stages share, as plain functions: TRL configs built from the parameter blocks (args), training a TRL
trainer with resume and an atomic save (fit), SFT on prompt/completion rows (sft), sampling + filtering traces
(sampling), and the parts of GRPO we own on top of TRL's trainer (grpo). Stages compose these; no stage imports
another stage, and nothing here imports a stage: a `ctx` argument is the StageContext the pipeline made."""
